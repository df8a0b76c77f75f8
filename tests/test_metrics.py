"""Issue: cost, usage, metrics and the request log. Exact Prometheus counters from the
real Envoy after scripted runs; usage sums and cost arithmetic against what the mock
reported, in all three APIs, streamed and not; one JSON log line per run; debug headers."""

import json
import re
import time

import httpx
import pytest

from harness import Envoy, demo_fusion_config, has_stats_access_logger

CHAT = "/v1/chat/completions"
PRICES = demo_fusion_config()["prices"]
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}


def chat(model, **extra):
    body = {"model": model, "messages": [{"role": "user", "content": "Is tea healthy?"}]}
    body.update(extra)
    return body


def prometheus(envoy):
    """{(name, frozenset(labels)): value} for every fusion_ series."""
    out = {}
    for line in envoy.stats().splitlines():
        m = re.match(r"^(fusion_\w+)(?:\{(.*)\})? (\S+)$", line)
        if m:
            labels = frozenset(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
            out[(m.group(1), labels)] = float(m.group(3))
    return out


def value(stats, name, **labels):
    return stats.get((name, frozenset(labels.items())), 0.0)


def total(stats, name):
    """The sum of a family's series over all their labels."""
    return sum(v for (n, _), v in stats.items() if n == name)


@pytest.fixture(scope="module")
def fresh(mock):
    """An Envoy of its own, so its counters start at zero."""
    e = Envoy(mock, name="metrics")
    yield e
    e.stop()


def test_counters_after_scripted_runs(fresh, mock):
    for _ in range(2):
        assert fresh.post(CHAT, chat("fusion")).status_code == 200
    mock.script({"mock-b": "status=500"})
    assert fresh.post(CHAT, chat("fusion")).status_code == 200
    mock.reset()
    mock.script({"mock-judge": "prose"})
    assert fresh.post(CHAT, chat("fusion")).status_code == 200
    mock.reset()
    # The outer model calls fusion twice: the second call hits the one-invocation cap.
    # (With a client tool of its own the model may still call tools after the first.)
    r = fresh.post(CHAT, chat("mock-outer:fusion_calls=2", tools=[{"type": "fusion"}, WEATHER]))
    assert r.status_code == 200 and r.json()["fusion"]["invocations"] == 1
    # An inner call (depth 1) is refused fusion and passes on.
    assert fresh.post(CHAT, chat("fusion"), headers={"x-fusion-depth": "1"}).status_code == 200

    s = prometheus(fresh)
    assert value(s, "fusion_runs_total", mode="alias", outcome="ok") == 2
    assert value(s, "fusion_runs_total", mode="alias", outcome="degraded") == 2
    assert value(s, "fusion_runs_total", mode="auto", outcome="ok") == 1
    assert value(s, "fusion_runs_total", mode="forced", outcome="ok") == 0
    assert value(s, "fusion_panel_calls_total") == 15
    assert value(s, "fusion_panel_failures_total", reason="http_5xx") == 1
    assert value(s, "fusion_panel_failures_total", reason="timeout") == 0
    assert value(s, "fusion_judge_degraded_total", reason="unusable_response") == 1
    # Once fusion ran, a Chat outer model is no longer offered the tool: no cap hit.
    assert value(s, "fusion_cap_hits_total") == 0
    assert value(s, "fusion_depth_refusals_total") == 1
    assert value(s, "fusion_truncations_total", budget="rounds") == 0
    assert value(s, "fusion_client_disconnects_total") == 0
    assert value(s, "fusion_active_runs") == 0
    # Histograms reach the admin endpoint at Envoy's stats flush (every 5 s by default).
    # The durations (seconds, recorded by the shipped stats access logger) carry mode and outcome.
    assert value(s, "fusion_cost_micros_total") > 0
    if not has_stats_access_logger():
        return  # Envoy 1.36: no stats access logger, no duration histograms (docs/observability.md)
    deadline = time.time() + 12
    while total(s, "fusion_run_duration_seconds_count") < 5 and time.time() < deadline:
        time.sleep(0.5)
        s = prometheus(fresh)
    assert total(s, "fusion_run_duration_seconds_count") == 5
    assert value(s, "fusion_run_duration_seconds_count", mode="alias", outcome="ok") == 2
    assert value(s, "fusion_run_duration_seconds_count", mode="alias", outcome="degraded") == 2
    assert value(s, "fusion_run_duration_seconds_count", mode="auto", outcome="ok") == 1
    assert total(s, "fusion_panel_wait_seconds_count") == 5
    # Seconds, not milliseconds: five runs against the local mock take well under 30 s.
    assert 0 < total(s, "fusion_run_duration_seconds_sum") < 30


def run_log_lines(envoy, request_id):
    lines = []
    for line in envoy.log_text().splitlines():
        start = line.find('{"')
        if '"event":"fusion_run"' in line and start >= 0:
            record = json.loads(line[start:])
            if record["request_id"] == request_id:
                lines.append(record)
    return lines


def test_one_log_line_per_run_with_the_chain_and_no_text(fresh, mock):
    mock.script({"mock-c": "status=429"})
    r = fresh.post(CHAT, chat("fusion", messages=[{"role": "user", "content": "secret question 7f3a"}]),
                   headers={"x-request-id": "log-test-1"})
    assert r.status_code == 200
    # The run id is the filter's own (unique per run); the client's request id is kept beside it.
    run_id = r.headers["x-fusion-run-id"]
    assert run_id.startswith("fr-") and run_id != "log-test-1"
    assert r.headers["x-fusion-panel"] == "ok=2, failed=1, late=0"
    [line] = run_log_lines(fresh, "log-test-1")
    assert line["run_id"] == run_id
    assert line["api"] == "chat" and line["mode"] == "alias" and line["outcome"] == "degraded"
    assert [(m["model"], m["status"]) for m in line["panel"]] == [
        ("mock-a", "ok"), ("mock-b", "ok"), ("mock-c", "failed")]
    assert line["panel"][2]["failure_reason"] == "rate_limited"
    assert line["judge"]["model"] == "mock-judge" and line["judge"]["status"] == "ok"
    assert line["final"][0]["model"] == "mock-outer"
    assert line["wall_ms"] >= 0 and line["rounds"] == 1
    assert line["usage"] == r.json()["fusion"]["usage"]
    assert line["cost"] == pytest.approx(r.json()["fusion"]["cost"])
    assert "secret question" not in fresh.log_text(), "no prompt text unless log.include_text"


def expected(mock):
    """Usage and cost summed from what the mock reported for each call."""
    inp = out = 0
    cost = 0.0
    for c in mock.calls():
        u = c["usage"]
        inp += u["input_tokens"]
        out += u["output_tokens"]
        p = PRICES[c["model"]]
        cost += (u["input_tokens"] * p["input_per_mtok"] + u["output_tokens"] * p["output_per_mtok"]) / 1e6
    return inp, out, cost


def sse_events(text):
    for block in text.split("\n\n"):
        data = [l[5:].strip() for l in block.split("\n") if l.startswith("data:")]
        if data and data[0] != "[DONE]":
            yield json.loads("\n".join(data))


CASES = {
    "chat": (CHAT, lambda b: b),
    "responses": ("/v1/responses", lambda b: {"model": b["model"], "input": "Is tea healthy?", "stream": b.get("stream", False)}),
    "messages": ("/v1/messages", lambda b: {**b, "max_tokens": 300}),
}


def usage_and_fusion(api, body, stream):
    """(input, output, fusion) as the client sees them, JSON or streamed."""
    if not stream:
        if api == "chat":
            u = body["usage"]
            return u["prompt_tokens"], u["completion_tokens"], body["fusion"]
        if api == "responses":
            u = body["usage"]
            return u["input_tokens"], u["output_tokens"], body["fusion"]
        u = body["usage"]
        return u["input_tokens"] + u.get("cache_read_input_tokens", 0), u["output_tokens"], body["fusion"]
    events = list(sse_events(body))
    if api == "chat":
        last = [e for e in events if e.get("usage")][-1]
        fusion = [e for e in events if "fusion" in e][-1]["fusion"]
        return last["usage"]["prompt_tokens"], last["usage"]["completion_tokens"], fusion
    if api == "responses":
        done = [e for e in events if e.get("type") == "response.completed"][-1]["response"]
        return done["usage"]["input_tokens"], done["usage"]["output_tokens"], done["fusion"]
    start = [e for e in events if e.get("type") == "message_start"][-1]["message"]
    delta = [e for e in events if e.get("type") == "message_delta"][-1]
    fusion = delta.get("fusion") or start.get("fusion")
    inp = delta["usage"].get("input_tokens", start["usage"]["input_tokens"])
    return inp, delta["usage"]["output_tokens"], fusion


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("api", list(CASES))
def test_usage_sums_and_cost_in_every_api(envoy, mock, api, stream):
    path, shape = CASES[api]
    body = shape(chat("fusion", stream=stream, **({"stream_options": {"include_usage": True}} if api == "chat" and stream else {})))
    r = envoy.post(path, body)
    assert r.status_code == 200, r.text
    inp, out, fusion = usage_and_fusion(api, r.text if stream else r.json(), stream)
    want_in, want_out, want_cost = expected(mock)
    assert (inp, out) == (want_in, want_out)
    assert fusion["usage"]["input_tokens"] == want_in and fusion["usage"]["output_tokens"] == want_out
    assert fusion["cost"] == pytest.approx(want_cost, rel=1e-9)
    # Each call's cost is its own tokens at its model's price.
    for m in fusion["panel"]:
        p = PRICES[m["model"]]
        u = m["usage"]
        assert m["cost"] == pytest.approx((u["input_tokens"] * p["input_per_mtok"] + u["output_tokens"] * p["output_per_mtok"]) / 1e6)


def test_unknown_price_is_null_never_zero(envoy, mock):
    decl = {"type": "fusion", "panel": ["mock-a", "mock-unpriced"]}
    r = envoy.post(CHAT, chat("mock-outer", tools=[decl], tool_choice="required"))
    assert r.status_code == 200, r.text
    fusion = r.json()["fusion"]
    panel = {m["model"]: m for m in fusion["panel"]}
    assert panel["mock-unpriced"]["cost"] is None and panel["mock-a"]["cost"] > 0
    assert fusion["cost"] is None
    assert fusion["unpriced_models"] == ["mock-unpriced"]
