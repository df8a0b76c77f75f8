"""Issue: merge mode. `"model": "fusion"` with a `fusion` block: the panel answers,
the synthesis model writes the merged answer; no judge, no tool loop. Real Envoy,
official SDKs, all three APIs."""

import json

import anthropic
import httpx
import openai
import pytest

from harness import assert_no_rejections

BLOCK = {"analysis_models": ["mock-a", "mock-b"], "synthesis_model": "mock-synth"}
QUESTION = "Is green tea healthy?"


def sdk(envoy):
    return openai.OpenAI(base_url=f"{envoy.url}/v1", api_key="sk-test", max_retries=0)


def models(mock):
    return [c["model"] for c in mock.calls()]


def synthesis_call(mock):
    calls = [c for c in mock.calls() if c["model"] == "mock-synth"]
    assert len(calls) == 1, models(mock)
    return calls[0]


def test_responses_sdk_merges_the_panel(envoy, mock):
    r = sdk(envoy).responses.create(model="fusion", input=QUESTION, extra_body={"fusion": BLOCK})
    assert sorted(models(mock)[:2]) == ["mock-a", "mock-b"]
    assert models(mock)[2:] == ["mock-synth"], "no judge and no decision round in merge mode"
    synth = synthesis_call(mock)
    prompt = json.dumps(synth["body"]["messages"])
    # Both answers reach the synthesis model, unnamed, after the user's question.
    assert "### Answer 1" in prompt and "### Answer 2" in prompt
    assert "mock-a answers" in prompt and "mock-b answers" in prompt
    assert "tools" not in synth["body"]
    assert r.output_text.startswith("mock-synth answers")
    assert r.model == "mock-synth"
    fusion = r.to_dict()["fusion"]
    assert fusion["mode"] == "merge" and fusion["judge"] is None
    assert [m["status"] for m in fusion["panel"]] == ["ok", "ok"]
    assert fusion["synthesizer"] == "mock-synth"
    # No fusion_call item: merge mode has no tool call to show.
    assert [o.type for o in r.output] == ["message"]
    usage = sum(c["usage"]["input_tokens"] + c["usage"]["output_tokens"] for c in mock.calls())
    assert r.usage.total_tokens == usage


def test_responses_sdk_streams_the_merged_answer(envoy, mock):
    stream = sdk(envoy).responses.create(
        model="fusion", input=QUESTION, extra_body={"fusion": BLOCK}, stream=True)
    events = list(stream)
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text.startswith("mock-synth answers")
    done = [e for e in events if e.type == "response.completed"]
    assert done and done[0].response.output_text == text
    assert models(mock)[2:] == ["mock-synth"]


def test_forwarded_parameters_reach_every_member(envoy, mock):
    sdk(envoy).responses.create(
        model="fusion", input=QUESTION, temperature=0.3, top_p=0.9, max_output_tokens=222,
        metadata={"team": "search"}, extra_body={"fusion": BLOCK})
    panel = [c for c in mock.calls() if c["model"] in ("mock-a", "mock-b")]
    assert len(panel) == 2
    for c in panel:
        body = c["body"]
        assert body["temperature"] == 0.3 and body["top_p"] == 0.9, body
        assert body["max_completion_tokens"] == 222
        # OpenAI refuses `metadata` without `store: true`, and an inner call is never
        # stored: a Chat Completions member gets no metadata (docs/wire-roles.md).
        assert "metadata" not in body, body
    assert_no_rejections(mock)


def test_failed_member_is_dropped_and_named(envoy, mock):
    mock.script({"mock-b": "status=500"})
    r = sdk(envoy).responses.create(model="fusion", input=QUESTION, extra_body={"fusion": BLOCK})
    prompt = json.dumps(synthesis_call(mock)["body"]["messages"])
    assert "### Answer 1" in prompt and "### Answer 2" not in prompt
    assert "mock-a answers" in prompt and "mock-b" not in prompt
    panel = {m["model"]: m for m in r.to_dict()["fusion"]["panel"]}
    assert panel["mock-b"]["status"] == "failed" and panel["mock-b"]["failure_reason"] == "http_500"
    assert r.output_text.startswith("mock-synth answers")


def test_all_members_failed_is_a_502_naming_each(envoy, mock):
    mock.script({"mock-a": "status=500", "mock-b": "status=429"})
    with pytest.raises(openai.APIStatusError) as e:
        sdk(envoy).responses.create(model="fusion", input=QUESTION, extra_body={"fusion": BLOCK})
    assert e.value.status_code == 502
    message = e.value.body["message"]
    assert "mock-a: http_500" in message and "mock-b: rate_limited" in message
    assert "mock-synth" not in models(mock)


@pytest.mark.parametrize("block,needle", [
    ({"analysis_models": []}, "`analysis_models` is empty"),
    ({"preset": "nope"}, "unknown fusion preset `nope`"),
    ({"analysis_models": "mock-a"}, "must be a list"),
    ({"synthesis_model": 7}, "`synthesis_model` must be a model name"),
])
def test_bad_blocks_are_native_400s(envoy, mock, block, needle):
    with pytest.raises(openai.BadRequestError) as e:
        sdk(envoy).responses.create(model="fusion", input=QUESTION, extra_body={"fusion": block})
    assert needle in e.value.body["message"]
    assert e.value.body["param"] == "fusion"
    assert mock.calls() == []


def test_preset_and_default_panel(envoy, mock):
    r = sdk(envoy).responses.create(model="fusion", input=QUESTION, extra_body={"fusion": {"preset": "fast"}})
    assert r.to_dict()["fusion"]["preset"] == "fast"
    assert sorted(m["model"] for m in r.to_dict()["fusion"]["panel"]) == ["mock-a", "mock-b"]
    mock.reset()
    # No analysis_models: the operator's default panel; no synthesis_model: the outer model.
    r = sdk(envoy).responses.create(model="fusion", input=QUESTION, extra_body={"fusion": {}})
    assert sorted(models(mock)[:3]) == ["mock-a", "mock-b", "mock-c"]
    assert models(mock)[3:] == ["mock-outer"]


def test_chat_completions_merge(envoy, mock):
    r = sdk(envoy).chat.completions.create(
        model="fusion", messages=[{"role": "user", "content": QUESTION}], extra_body={"fusion": BLOCK})
    assert r.choices[0].message.content.startswith("mock-synth answers")
    assert r.to_dict()["fusion"]["mode"] == "merge"
    chunks = list(sdk(envoy).chat.completions.create(
        model="fusion", messages=[{"role": "user", "content": QUESTION}], extra_body={"fusion": BLOCK},
        stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("mock-synth answers")
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0


def test_messages_merge(envoy, mock):
    client = anthropic.Anthropic(base_url=envoy.url, api_key="sk-ant-test", max_retries=0)
    r = client.messages.create(
        model="fusion", max_tokens=300, messages=[{"role": "user", "content": QUESTION}],
        extra_body={"fusion": BLOCK})
    assert r.content[0].text.startswith("mock-synth answers")
    assert r.model == "mock-synth"
    assert [b.type for b in r.content] == ["text"]
    with client.messages.stream(
            model="fusion", max_tokens=300, messages=[{"role": "user", "content": QUESTION}],
            extra_body={"fusion": BLOCK}) as stream:
        text = "".join(stream.text_stream)
    assert text.startswith("mock-synth answers")
    with pytest.raises(anthropic.BadRequestError) as e:
        client.messages.create(
            model="fusion", max_tokens=300, messages=[{"role": "user", "content": QUESTION}],
            extra_body={"fusion": {"analysis_models": []}})
    assert e.value.body["type"] == "error" and "is empty" in e.value.body["error"]["message"]
