"""Issue: fusion over Chat Completions in a real Envoy, with the shipped demo config."""

import json
import re

import httpx

CHAT = "/v1/chat/completions"
PANEL = ["mock-a", "mock-b", "mock-c"]


def fusion_request(**extra):
    body = {
        "model": "fusion",
        "messages": [
            {"role": "system", "content": "Answer in one sentence."},
            {"role": "user", "content": "Why is the sky blue?"},
        ],
    }
    body.update(extra)
    return body


def inner_calls(mock):
    calls = mock.calls("chat")
    by_model = {}
    for c in calls:
        by_model.setdefault(c["model"], []).append(c)
    return calls, by_model


def test_alias_runs_panel_judge_and_outer_model(envoy, mock):
    # Members take 300 ms (mock-c 600 ms): sequential calls could not overlap.
    mock.script({"mock-a": "latency=300", "mock-b": "latency=300", "mock-c": "latency=600",
                 "mock-judge": "latency=100"})
    r = envoy.post(CHAT, fusion_request())
    assert r.status_code == 200, r.text
    body = r.json()

    calls, by_model = inner_calls(mock)
    assert sorted(by_model) == sorted(PANEL + ["mock-judge", "mock-outer"])
    assert all(len(v) == 1 for v in by_model.values()), "one call per model"
    panel = [by_model[m][0] for m in PANEL]
    judge = by_model["mock-judge"][0]
    outer = by_model["mock-outer"][0]

    # Parallel: every member started before any finished.
    assert max(c["start_ms"] for c in panel) < min(c["end_ms"] for c in panel)
    # The judge starts only after the slowest member answered, the outer model after the judge.
    # (The mock stamps end_ms after its write returns, which can trail the filter's next
    # call by a fraction of a millisecond; the scripted latencies give a clean bound.)
    assert judge["start_ms"] >= by_model["mock-c"][0]["start_ms"] + 600
    assert outer["start_ms"] >= judge["start_ms"] + 100

    # Every inner call carries the depth header.
    for c in calls:
        assert c["headers"].get("x-fusion-depth") == "1", c["model"]

    # The panel got the client's conversation, system prompt included.
    for c in panel:
        assert c["body"]["messages"] == fusion_request()["messages"]

    # The judge saw the three answers, labelled neutrally.
    judge_prompt = judge["body"]["messages"][-1]["content"]
    assert re.findall(r'^<response-[0-9a-f]{16} n="(\d)">$', judge_prompt, re.M) == ["1", "2", "3"]

    # The outer model's final request contains the judge's analysis as the fusion tool result.
    tool_msg = outer["body"]["messages"][-1]
    assert tool_msg["role"] == "tool"
    result = json.loads(tool_msg["content"])
    assert result["status"] == "ok"
    assert set(result["analysis"]) == {"consensus", "contradictions", "partial_coverage", "unique_insights", "blind_spots"}
    assert result["analysis"]["consensus"] == ["All 3 responses agree on the main point."]
    assert [x["model"] for x in result["responses"]] == PANEL

    # What the client sees: a normal chat.completion written by the outer model.
    assert body["object"] == "chat.completion"
    assert body["model"] == "mock-outer"
    choice = body["choices"][0]
    assert choice["finish_reason"] == "stop"
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"].startswith("mock-outer final answer.")
    assert "consensus" in choice["message"]["content"]

    # Usage is the sum over every call of the turn, as the mock reported it.
    prompt = sum(c["usage"]["input_tokens"] for c in calls)
    completion = sum(c["usage"]["output_tokens"] for c in calls)
    assert body["usage"] == {"prompt_tokens": prompt, "completion_tokens": completion,
                             "total_tokens": prompt + completion,
                             "prompt_tokens_details": {"cached_tokens": 0},
                             "completion_tokens_details": {"reasoning_tokens": 0}}

    fusion = body["fusion"]
    assert [(m["model"], m["status"]) for m in fusion["panel"]] == [(m, "ok") for m in PANEL]
    assert all(m["latency_ms"] >= 300 for m in fusion["panel"])
    assert fusion["judge"]["model"] == "mock-judge" and fusion["judge"]["status"] == "ok"
    assert fusion["analysis"] is True
    assert fusion["mode"] == "alias"
    assert fusion["synthesizer"] == "mock-outer"


def test_failed_member_and_prose_judge_still_answer(envoy, mock):
    mock.script({"mock-b": "status=500", "mock-judge": "prose"})
    r = envoy.post(CHAT, fusion_request())
    assert r.status_code == 200, r.text
    body = r.json()
    statuses = {m["model"]: (m["status"], m.get("failure_reason")) for m in body["fusion"]["panel"]}
    assert statuses == {"mock-a": ("ok", None), "mock-b": ("failed", "http_500"), "mock-c": ("ok", None)}
    assert body["fusion"]["analysis"] is False
    outer = [c for c in mock.calls("chat") if c["model"] == "mock-outer"][0]
    result = json.loads(outer["body"]["messages"][-1]["content"])
    assert "analysis" not in result
    assert result["failed_models"] == [{"model": "mock-b", "reason": "http_500"}]
    assert body["choices"][0]["message"]["content"].startswith("mock-outer final answer.")


def test_non_fusion_chat_passes_through_unchanged(envoy, mock):
    raw = b'{"model": "gpt-plain",  "messages": [{"role": "user", "content": "hi"}], "temperature": 0.5}'
    r = envoy.post(CHAT, raw)
    assert r.status_code == 200
    assert r.json()["model"] == "gpt-plain"
    assert "fusion" not in r.json()
    calls = mock.calls()
    assert len(calls) == 1, "no callouts"
    assert calls[0]["body"] == json.loads(raw)
    assert calls[0]["headers"]["content-length"] == str(len(raw))
    assert "x-fusion-depth" not in calls[0]["headers"]


def test_non_llm_request_passes_through_unchanged(envoy, mock):
    raw = b'{"model": "fusion", "note": "not an LLM path"}'
    r = envoy.post("/v1/other", raw)
    assert r.status_code == 200
    assert r.json() == {"echo": True, "method": "POST", "path": "/v1/other", "body": raw.decode()}
    g = httpx.get(f"{envoy.url}/health?x=1")
    assert g.json()["path"] == "/health?x=1"
    assert len(mock.calls()) == 2, "no callouts"


def test_inner_call_with_depth_gets_no_fusion(envoy, mock):
    r = envoy.post(CHAT, fusion_request(), headers={"x-fusion-depth": "1"})
    assert r.status_code == 200
    calls = mock.calls()
    assert [c["model"] for c in calls] == ["mock-outer"], "alias resolved to the plain model, no callouts"
    assert "fusion" not in r.json()


def test_bad_fusion_request_gets_native_error(envoy, mock):
    r = envoy.post(CHAT, {"model": "fusion", "messages": "not a list"})
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and err["param"] == "messages"
    assert mock.calls() == []
    # The VM is alive: the next fusion request succeeds.
    assert envoy.post(CHAT, fusion_request()).status_code == 200
