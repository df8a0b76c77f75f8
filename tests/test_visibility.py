"""Issues 17-19 (filter side): what a client and an operator can see of a run,
through a real Envoy: `x-fusion-include`, `outcome`/`truncated_by`,
`x-fusion-skipped`, trace context on every callout, filter state in the access
log, and per-route policy from route metadata."""

import json
import time

import httpx
import pytest

from harness import Envoy, demo_fusion_config

CHAT = "/v1/chat/completions"
PANEL = ["mock-a", "mock-b", "mock-c"]
ANALYSIS_KEYS = {"consensus", "contradictions", "partial_coverage", "unique_insights", "blind_spots"}
BOTH = {"x-fusion-include": "analysis,responses"}


def sse_events(text):
    for block in text.split("\n\n"):
        data = [l[5:].strip() for l in block.split("\n") if l.startswith("data:")]
        if data and data[0] != "[DONE]":
            yield json.loads("\n".join(data))


def request(api, stream=False, **extra):
    if api == "chat":
        body = {"model": "fusion", "messages": [{"role": "user", "content": "Is tea healthy?"}]}
        path = CHAT
    elif api == "responses":
        body = {"model": "fusion", "input": "Is tea healthy?"}
        path = "/v1/responses"
    else:
        body = {"model": "fusion", "max_tokens": 300,
                "messages": [{"role": "user", "content": "Is tea healthy?"}]}
        path = "/v1/messages"
    if stream:
        body["stream"] = True
    body.update(extra)
    return path, body


def fusion_of(api, r, stream):
    """The `fusion` object as the client sees it, JSON or streamed."""
    if not stream:
        return r.json()["fusion"]
    events = list(sse_events(r.text))
    if api == "chat":
        return [e for e in events if "fusion" in e][-1]["fusion"]
    if api == "responses":
        return [e for e in events if e.get("type") == "response.completed"][-1]["response"]["fusion"]
    delta = [e for e in events if e.get("type") == "message_delta"][-1]
    return delta["fusion"]


def assert_full_report(fusion, models=PANEL):
    assert isinstance(fusion["analysis"], dict), fusion["analysis"]
    assert set(fusion["analysis"]) == ANALYSIS_KEYS
    assert [r["model"] for r in fusion["responses"]] == models
    assert all(isinstance(r["text"], str) and r["text"] for r in fusion["responses"])
    assert fusion["outcome"] == "ok"
    assert fusion["truncated_by"] is None


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("api", ["chat", "responses", "messages"])
def test_include_header_shows_analysis_and_answers_in_every_api(envoy, mock, api, stream):
    # Streamed Chat goes up the route (the relay writes the report on the
    # closing event); streamed Responses and Messages are written by the filter.
    path, body = request(api, stream)
    r = envoy.post(path, body, headers=BOTH)
    assert r.status_code == 200, r.text
    fusion = fusion_of(api, r, stream)
    assert_full_report(fusion)
    # The texts are the members' own answers, as the mock logged them.
    answered = {c["model"] for c in mock.calls()}
    assert set(PANEL) <= answered


@pytest.mark.parametrize("api", ["chat", "responses", "messages"])
def test_merge_mode_shows_the_panels_answers(envoy, mock, api):
    path, body = request(api, fusion={"analysis_models": ["mock-a", "mock-b"]})
    r = envoy.post(path, body, headers={"x-fusion-include": "responses"})
    assert r.status_code == 200, r.text
    fusion = r.json()["fusion"]
    assert fusion["mode"] == "merge"
    assert [x["model"] for x in fusion["responses"]] == ["mock-a", "mock-b"]
    assert fusion["analysis"] is False, "no judge in merge mode, and analysis was not asked for"


def test_without_the_header_the_report_keeps_its_shape(envoy, mock):
    path, body = request("chat")
    fusion = envoy.post(path, body).json()["fusion"]
    assert fusion["analysis"] is True
    assert "responses" not in fusion
    assert fusion["outcome"] == "ok" and fusion["truncated_by"] is None


def test_a_failed_judge_gives_a_null_analysis_and_a_degraded_outcome(envoy, mock):
    mock.script({"mock-judge": "status=500"})
    path, body = request("chat")
    r = envoy.post(path, body, headers={"x-fusion-include": "analysis"})
    assert r.status_code == 200, r.text
    fusion = r.json()["fusion"]
    assert fusion["analysis"] is None
    assert fusion["outcome"] == "degraded"


WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}}}


def test_a_truncated_run_says_which_budget(mock):
    config = demo_fusion_config()
    config["limits"] = {**config["limits"], "max_rounds": 2}
    # On a Messages upstream the spent fusion tool stays declared (Anthropic requires it).
    config["upstreams"]["anthropic"] = {"cluster": "mock", "authority": "mock", "api": "messages"}
    config["routes"] = [{"prefix": "claude-", "upstream": "anthropic"}] + config["routes"]
    e = Envoy(mock, name="visibility-rounds", fusion_config=config)
    try:
        # The outer model keeps calling fusion: the second round is the last.
        body = {"model": "claude-outer:fusion_calls=5",
                "messages": [{"role": "user", "content": "Q"}],
                "tools": [{"type": "fusion"}, WEATHER]}
        r = e.post(CHAT, body)
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["finish_reason"] == "length"
        fusion = r.json()["fusion"]
        assert fusion["outcome"] == "truncated"
        assert fusion["truncated_by"] == "rounds"
    finally:
        e.stop()


def test_an_inner_call_is_told_it_got_no_fusion(envoy, mock):
    path, body = request("chat")
    r = envoy.post(path, body, headers={"x-fusion-depth": "1"})
    assert r.status_code == 200, r.text
    assert r.headers.get("x-fusion-skipped") == "depth"
    assert "fusion" not in r.json()
    assert [c["model"] for c in mock.calls()] == ["mock-outer"]


def test_a_fusion_body_without_json_content_type_is_told_why(envoy, mock):
    path, body = request("chat")
    r = httpx.post(f"{envoy.url}{path}", content=json.dumps(body),
                   headers={"content-type": "application/x-www-form-urlencoded"}, timeout=30)
    assert r.headers.get("x-fusion-skipped") == "content_type"
    # A plain request with that content type gets no such header.
    plain = {"model": "mock-a", "messages": [{"role": "user", "content": "hi"}]}
    r = httpx.post(f"{envoy.url}{path}", content=json.dumps(plain),
                   headers={"content-type": "text/plain"}, timeout=30)
    assert "x-fusion-skipped" not in r.headers


def test_a_plain_request_gets_no_skipped_header(envoy, mock):
    r = envoy.post(CHAT, {"model": "mock-a", "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200
    assert "x-fusion-skipped" not in r.headers


@pytest.mark.parametrize("kind", ["fusionx", "openrouter:fusion2"])
def test_a_misspelled_fusion_tool_type_is_a_400(envoy, mock, kind):
    body = {"model": "mock-outer", "messages": [{"role": "user", "content": "Q"}],
            "tools": [{"type": kind}]}
    r = envoy.post(CHAT, body)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert kind in err["message"] and err["param"] == "tools"
    assert mock.calls() == []


TRACE = {
    "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    "tracestate": "vendor=opaque",
    "x-request-id": "visibility-trace-1",
    "x-b3-traceid": "80f198ee56343ba864fe8b2a57d3eff7",
    "x-b3-spanid": "e457b5a2e4d86bd1",
    "x-b3-sampled": "1",
    "b3": "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1",
    "baggage": "team=search",
}


@pytest.mark.parametrize("stream", [False, True], ids=["local-final", "route-final"])
def test_trace_context_reaches_every_callout(envoy, mock, stream):
    path, body = request("chat", stream)
    r = envoy.post(path, body, headers=TRACE)
    assert r.status_code == 200, r.text
    calls = mock.calls()
    assert sorted(c["model"] for c in calls) == sorted(PANEL + ["mock-judge", "mock-outer"])
    for c in calls:
        for name, value in TRACE.items():
            assert c["headers"].get(name) == value, (c["model"], name, c["headers"])


def access_log_lines(e, run_id, timeout=20.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        # Envoy's own log shares the file: match the access line anywhere in a line.
        lines = [l[l.index("fusion_access "):] for l in e.log_text().splitlines()
                 if "fusion_access " in l and f"request_id={run_id} " in l]
        if lines:
            return lines
        time.sleep(0.2)
    return []


def test_access_log_reads_the_runs_filter_state(envoy, mock):
    mock.script({"mock-c": "status=429"})
    path, body = request("chat")
    r = envoy.post(path, body, headers={"x-request-id": "visibility-log-1"})
    assert r.status_code == 200, r.text
    cost = r.json()["fusion"]["cost"]
    lines = access_log_lines(envoy, "visibility-log-1")
    assert lines, envoy.log_text()[-2000:]
    fields = dict(kv.split("=", 1) for kv in lines[-1].split()[1:] if "=" in kv)
    # Run ids are unique per run; the client's x-request-id is logged beside it.
    assert fields["run_id"].startswith("fr-") and fields["request_id"] == "visibility-log-1", fields
    assert fields["mode"] == "alias"
    assert fields["outcome"] == "degraded"
    assert fields["panel"] == "ok=2,failed=1,late=0"
    assert abs(float(fields["cost"]) - cost) < 1e-9
    # A plain request has no run: the fields are Envoy's "-".
    envoy.post(CHAT, {"model": "mock-a", "messages": [{"role": "user", "content": "hi"}]},
               headers={"x-request-id": "visibility-log-2"})
    plain = access_log_lines(envoy, "visibility-log-2")
    assert plain and "mode=- " in plain[-1] and "skipped=-" in plain[-1]
    # A request that asked for fusion and did not get it says why.
    path, body = request("chat")
    envoy.post(path, body, headers={"x-request-id": "visibility-log-3", "x-fusion-depth": "1"})
    skipped = access_log_lines(envoy, "visibility-log-3")
    assert skipped and skipped[-1].endswith("skipped=depth"), skipped


ROUTES = """              routes:
              - match: {prefix: "/", headers: [{name: x-team, string_match: {exact: small}}]}
                route: {cluster: mock, timeout: 130s}
                metadata: {filter_metadata: {fusion: {panel: "mock-a, mock-b", judge: "mock-outer"}}}
              - match: {prefix: "/", headers: [{name: x-team, string_match: {exact: fast}}]}
                route: {cluster: mock, timeout: 130s}
                metadata: {filter_metadata: {fusion: {preset: fast}}}
              - match: {prefix: "/", headers: [{name: x-team, string_match: {exact: plain}}]}
                route: {cluster: mock, timeout: 130s}
                metadata: {filter_metadata: {fusion: {disabled: true}}}
              - match: {prefix: "/"}
                route: {cluster: mock, timeout: 130s}
"""


def with_routes(text):
    start = text.index("              routes:\n")
    end = text.index("          http_filters:")
    return text[:start] + ROUTES + text[end:]


@pytest.fixture(scope="module")
def routed(mock):
    e = Envoy(mock, name="visibility-routes", transform=with_routes)
    yield e
    e.stop()


def test_route_metadata_chooses_the_panel_judge_or_no_fusion(routed, mock):
    path, body = request("chat")
    r = routed.post(path, body, headers={"x-team": "small"})
    assert r.status_code == 200, r.text
    fusion = r.json()["fusion"]
    assert [m["model"] for m in fusion["panel"]] == ["mock-a", "mock-b"]
    assert fusion["judge"]["model"] == "mock-outer"

    mock.reset()
    r = routed.post(path, body, headers={"x-team": "fast"})
    assert [m["model"] for m in r.json()["fusion"]["panel"]] == ["mock-a", "mock-b"]

    mock.reset()
    r = routed.post(path, body, headers={"x-team": "plain"})
    assert r.status_code == 200, r.text
    assert r.headers.get("x-fusion-skipped") == "route_disabled"
    assert "fusion" not in r.json()
    assert [c["model"] for c in mock.calls()] == ["mock-outer"]

    # The default route keeps the operator's defaults.
    mock.reset()
    r = routed.post(path, body)
    assert [m["model"] for m in r.json()["fusion"]["panel"]] == PANEL


# --- the SDK forms docs/observability.md shows -----------------------------------

def test_openai_sdk_reads_the_report(envoy, mock):
    import openai
    client = openai.OpenAI(base_url=f"{envoy.url}/v1", api_key="sk-test", max_retries=0)
    include = {"x-fusion-include": "analysis,responses"}
    msgs = [{"role": "user", "content": "Is tea healthy?"}]
    r = client.chat.completions.create(model="fusion", messages=msgs, extra_headers=include)
    assert_full_report(r.model_extra["fusion"])
    r = client.responses.create(model="fusion", input="Is tea healthy?", extra_headers=include)
    assert_full_report(r.model_extra["fusion"])
    fusion = None
    for chunk in client.chat.completions.create(model="fusion", messages=msgs, stream=True,
                                                extra_headers=include):
        fusion = (chunk.model_extra or {}).get("fusion", None) or fusion
    assert_full_report(fusion)


def test_anthropic_sdk_reads_the_report_json_and_from_raw_stream_events(envoy, mock):
    import anthropic
    client = anthropic.Anthropic(base_url=envoy.url, api_key="sk-ant-test", max_retries=0)
    include = {"x-fusion-include": "analysis,responses"}
    msgs = [{"role": "user", "content": "Is tea healthy?"}]
    msg = client.messages.create(model="fusion", max_tokens=300, messages=msgs, extra_headers=include)
    assert_full_report(msg.model_extra["fusion"])
    fusion = None
    for event in client.messages.create(model="fusion", max_tokens=300, messages=msgs, stream=True,
                                        extra_headers=include):
        if event.type == "message_delta":
            fusion = event.model_extra["fusion"]
    assert_full_report(fusion)
    # What the docs warn about: the accumulated final message has no `fusion`.
    with client.messages.stream(model="fusion", max_tokens=300, messages=msgs,
                                extra_headers=include) as stream:
        final = stream.get_final_message()
    assert "fusion" not in (final.model_extra or {})
