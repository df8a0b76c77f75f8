"""Issue: hardening. Faults injected by the mock into panel members, the judge and the
outer model (connection resets, hangs, slow bodies, 5xx, 429 with retry-after, 402,
truncated JSON, truncated SSE, garbage, a judge answering prose) each give the
documented degradation, in time: never past the turn budget. Then many client
disconnects mid-run: no crash, no growth.

One Envoy with tight budgets (tool 1.5 s, turn 4 s) and a mixed configuration: one
member per provider API (chat/a, responses/b, messages/c), the judge on Responses, the
outer model on Chat. The mock sees the names without their prefix (a, b, c, judge, outer),
which is what its run-time scripts key on. Cases marked xfail are gaps the filter still
has (listed for the lead)."""

from __future__ import annotations

import concurrent.futures
import json
import re
import time

import httpx
import pytest

from harness import Envoy

PATHS = {"chat": "/v1/chat/completions", "responses": "/v1/responses", "messages": "/v1/messages"}
APIS = list(PATHS)
TOOL_S, TURN_S = 1.5, 4.0
# Scheduling slack on a shared 2-core machine; a hang would blow far past it.
MARGIN_S = 1.5
MEMBERS = {"a": "chat/a", "b": "responses/b", "c": "messages/c"}
# Cases run, VM failures in the logs, answers later than the turn budget.
STATS = {"cases": 0, "crashes": 0, "hangs": 0}
VM_FAILURE = re.compile(r"panicked|wasm trap|Wasm VM failed|Function: proxy_on_\w+ failed|unreachable executed")


def mixed_config() -> dict:
    return {
        "aliases": ["fusion"],
        "outer_model": "chat/outer",
        "panel": [{"model": m} for m in MEMBERS.values()],
        "judge": {"model": "responses/judge"},
        "limits": {"tool_timeout_ms": int(TOOL_S * 1000), "turn_timeout_ms": int(TURN_S * 1000)},
        "upstreams": {api: {"cluster": "mock", "api": api} for api in APIS},
        "routes": [{"prefix": f"{api}/", "strip_prefix": True, "upstream": api} for api in APIS],
    }


@pytest.fixture(scope="module")
def faults(mock):
    e = Envoy(mock, name="faults", fusion_config=mixed_config())
    yield e
    e.stop()


def request(api: str, stream: bool = False) -> dict:
    if api == "chat":
        body = {"model": "fusion", "messages": [{"role": "user", "content": "Is tea healthy?"}]}
    elif api == "responses":
        body = {"model": "fusion", "input": "Is tea healthy?"}
    else:
        body = {"model": "fusion", "max_tokens": 200, "messages": [{"role": "user", "content": "Is tea healthy?"}]}
    if stream:
        body["stream"] = True
    return body


def timed(envoy, api: str, stream: bool = False, timeout: float = TURN_S + MARGIN_S + 5):
    """Sends a fusion request; returns (response, seconds). Counts hangs: answers past
    the turn budget (plus slack)."""
    STATS["cases"] += 1
    start = time.monotonic()
    try:
        r = envoy.post(PATHS[api], request(api, stream), timeout=timeout)
    except httpx.TimeoutException:
        STATS["hangs"] += 1
        raise
    elapsed = time.monotonic() - start
    if elapsed > TURN_S + MARGIN_S:
        STATS["hangs"] += 1
    assert elapsed < TURN_S + MARGIN_S, f"answered after {elapsed:.2f}s, past the {TURN_S}s turn budget"
    return r, elapsed


def final_text(api: str, body: dict) -> str:
    if api == "chat":
        return body["choices"][0]["message"]["content"] or ""
    if api == "responses":
        return body["output"][-1]["content"][0]["text"]
    return body["content"][-1]["text"]


def tool_result(mock) -> dict:
    """The fusion tool result as the outer model received it (the outer model speaks Chat)."""
    outer = [c for c in mock.calls() if c["model"] == "outer"]
    assert outer, [c["model"] for c in mock.calls()]
    return json.loads(outer[-1]["body"]["messages"][-1]["content"])


def native_error(api: str, r: httpx.Response) -> dict:
    body = r.json()
    if api == "messages":
        assert body["type"] == "error" and set(body["error"]) >= {"type", "message"}, body
        return body["error"]
    assert set(body["error"]) >= {"message", "type", "param", "code"}, body
    return body["error"]


# --- one panel member fails ------------------------------------------------------

MEMBER_FAULTS = [
    ("reset", "unreachable"),
    ("cut", "unreachable"),  # headers, half the body, then the connection closes
    ("hang", "timeout"),
    ("slow_body=300", None),  # slow but inside the budget: fine
    ("slow_body=5000", "timeout"),
    ("status=500", "http_500"),
    ("status=503", "http_503"),
    ("status=429", "rate_limited"),  # with retry-after: 1
    ("status=402", "insufficient_credits"),
    ("malformed", "unusable_response"),  # truncated JSON
    ("sse", None),  # an SSE answer to a non-streaming call is still read
    ("sse,malformed", "unusable_response"),  # truncated SSE
    ("sse,cut", "unreachable"),
    ("garbage", "unusable_response"),  # not UTF-8
    ("empty", "empty_response"),
]


@pytest.mark.parametrize("member", list(MEMBERS))
@pytest.mark.parametrize("directive,reason", MEMBER_FAULTS)
def test_member_fault(faults, mock, member, directive, reason):
    # Each member speaks another provider API; the client API rotates with it.
    api = APIS[list(MEMBERS).index(member)]
    mock.script({member: directive})
    r, elapsed = timed(faults, api)
    assert r.status_code == 200, r.text[:300]
    body = r.json()
    panel = {m["model"]: m for m in body["fusion"]["panel"]}
    others = [MEMBERS[m] for m in MEMBERS if m != member]
    assert all(panel[m]["status"] == "ok" for m in others), panel
    result = tool_result(mock)
    assert result["status"] == "ok"
    if reason is None:
        assert panel[MEMBERS[member]]["status"] == "ok"
        assert len(result["responses"]) == 3 and result["failed_models"] == []
    else:
        assert panel[MEMBERS[member]]["status"] == "failed"
        assert panel[MEMBERS[member]]["failure_reason"] == reason
        assert result["failed_models"] == [{"model": MEMBERS[member], "reason": reason}]
        assert len(result["responses"]) == 2
    if reason == "timeout":
        assert elapsed >= TOOL_S - 0.1, "a timeout before the tool budget ran out"
    assert final_text(api, body).startswith("outer final answer.")


def test_slow_member_times_out_at_the_tool_budget(faults, mock):
    mock.script({"c": "latency=3000"})
    r, elapsed = timed(faults, "messages")
    assert r.status_code == 200, r.text[:300]
    panel = {m["model"]: m for m in r.json()["fusion"]["panel"]}
    assert panel["messages/c"]["failure_reason"] == "timeout"
    assert TOOL_S - 0.1 <= panel["messages/c"]["latency_ms"] / 1000 < TOOL_S + 1.0
    assert elapsed < TOOL_S + MARGIN_S


def test_judge_still_runs_after_a_member_timed_out(faults, mock):
    # A judge that needs 50 ms: with the member eating the whole tool budget it gets 0-2 ms.
    mock.script({"b": "hang", "judge": "latency=50"})
    r, _ = timed(faults, "chat")
    assert r.status_code == 200
    assert r.json()["fusion"]["analysis"] is True, r.json()["fusion"]["judge"]


# --- every member fails ----------------------------------------------------------

@pytest.mark.parametrize("directive,failure_reason", [
    ("hang", "all_panels_failed"),
    ("cut", "all_panels_failed"),
    ("sse,malformed", "all_panels_failed"),
    ("status=429", "rate_limited"),
    ("status=402", "insufficient_credits"),
])
def test_all_members_fail(faults, mock, directive, failure_reason):
    mock.script({m: directive for m in MEMBERS})
    r, elapsed = timed(faults, "messages")
    assert r.status_code == 200, r.text[:300]
    result = tool_result(mock)
    assert result["status"] == "error" and result["failure_reason"] == failure_reason, result
    assert "judge" not in [c["model"] for c in mock.calls()], "no judge without answers"
    # The outer model still answers, told why.
    assert final_text("messages", r.json()).startswith("outer final answer.")
    if directive == "hang":
        assert TOOL_S - 0.1 <= elapsed


# --- the judge fails -------------------------------------------------------------

@pytest.mark.parametrize("directive", [
    "reset", "cut", "hang", "slow_body=5000", "status=500", "status=429", "status=402",
    "malformed", "sse,malformed", "garbage", "prose", "empty",
])
def test_judge_fault_keeps_the_answers(faults, mock, directive):
    mock.script({"judge": directive})
    r, _ = timed(faults, "responses")
    assert r.status_code == 200, r.text[:300]
    body = r.json()
    result = tool_result(mock)
    # Judge failure: status ok without analysis, the answers kept.
    assert result["status"] == "ok" and "analysis" not in result, result
    assert len(result["responses"]) == 3
    assert body["fusion"]["analysis"] is False and body["fusion"]["judge"]["status"] == "failed"
    assert final_text("responses", body).startswith("outer final answer.")


def test_fenced_judge_is_tolerated(faults, mock):
    mock.script({"judge": "fenced"})
    r, _ = timed(faults, "responses")
    assert r.status_code == 200 and r.json()["fusion"]["analysis"] is True
    assert tool_result(mock)["analysis"]["consensus"]


# --- the outer model fails (a callout: the filter answers) ------------------------

@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("directive,status,reason", [
    ("reset", 502, "unreachable"),
    ("cut", 502, "unreachable"),
    ("status=500", 502, "http_500"),
    ("status=429", 429, "rate_limited"),
    ("status=402", 402, "insufficient_credits"),
    ("malformed", 502, "unusable_response"),
    ("sse,malformed", 502, "unusable_response"),
    ("garbage", 502, "unusable_response"),
])
def test_outer_fault_is_a_native_error(faults, mock, api, directive, status, reason):
    mock.script({"outer": directive})
    r, _ = timed(faults, api)
    assert r.status_code == status, r.text[:300]
    err = native_error(api, r)
    assert "outer" in err["message"] and reason in err["message"], err
    # The run's report still comes with the error.
    assert r.json()["fusion"]["analysis"] is True


@pytest.mark.parametrize("api", ["messages"])  # each API's truncation signal: test_tool_loop.py
def test_outer_hang_truncates_at_the_turn_budget(faults, mock, api):
    mock.script({"outer": "hang"})
    r, elapsed = timed(faults, api)
    assert r.status_code == 200, r.text[:300]
    body = r.json()
    assert elapsed >= TURN_S - 0.2
    if api == "chat":
        assert body["choices"][0]["finish_reason"] == "length"
    elif api == "responses":
        assert body["status"] == "incomplete"
    else:
        assert body["stop_reason"] == "pause_turn"


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("directive", ["slow_body=8000", "sse,slow_body=8000"])
def test_outer_headers_then_stall_truncates_at_the_turn_budget(faults, mock, api, directive):
    # The outer model sends its headers, then drips past the turn budget: Envoy cuts the
    # callout at the deadline and the turn ends as the documented truncation, as on a hang.
    mock.script({"outer": directive})
    r, elapsed = timed(faults, api)
    assert r.status_code == 200, r.text[:300]
    body = r.json()
    assert elapsed >= TURN_S - 0.2
    if api == "chat":
        assert body["choices"][0]["finish_reason"] == "length"
    elif api == "responses":
        assert body["status"] == "incomplete"
    else:
        assert body["stop_reason"] == "pause_turn"


# --- the outer model fails while its stream comes up the route --------------------

def test_streamed_final_answer_provider_error_passes_through(faults, mock):
    mock.script({"outer": "status=500"})
    r, _ = timed(faults, "chat", stream=True)
    assert r.status_code == 500
    native_error("chat", r)


def test_streamed_final_answer_truncated_stream_is_not_a_hang(faults, mock):
    mock.script({"outer": "malformed"})
    r, _ = timed(faults, "chat", stream=True)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    assert "data: [DONE]" not in r.text, "the provider's stream was cut: the client sees it end early"


def test_streamed_final_answer_hang_ends_at_the_turn_budget(faults, mock):
    # The resumed request carries the remaining turn budget as its route timeout.
    mock.script({"outer": "hang"})
    r, elapsed = timed(faults, "chat", stream=True)
    assert r.status_code == 504 and elapsed >= TURN_S - 0.2


def test_streamed_final_answer_dripping_is_cut_at_the_turn_budget(faults, mock):
    # Headers and the first events went out: at the deadline the stream is cut, in time.
    mock.script({"outer": "slow_body=8000"})
    STATS["cases"] += 1
    start = time.monotonic()
    with pytest.raises(httpx.RemoteProtocolError):
        faults.post(PATHS["chat"], request("chat", stream=True), timeout=TURN_S + MARGIN_S)
    assert TURN_S - 0.2 <= time.monotonic() - start < TURN_S + MARGIN_S


# Envoy's own reply on the route (503 on a reset, 504 at the turn deadline) is read by the
# filter in on_http_response_headers and answered in the client API's shape.
@pytest.mark.parametrize("directive", ["reset", "hang"])
def test_streamed_final_answer_failure_is_a_native_error(faults, mock, directive):
    mock.script({"outer": directive})
    r, _ = timed(faults, "chat", stream=True)
    assert r.status_code in (502, 503, 504)
    native_error("chat", r)


# --- client disconnects ----------------------------------------------------------

def gauge(envoy, name: str) -> int:
    m = re.search(rf"^{name}(?:\{{\}})? (\d+)", envoy.stats(), re.M)
    return int(m.group(1)) if m else 0


def memory(envoy) -> dict:
    """Envoy's heap (admin /memory) and the process RSS, which includes the Wasm VMs."""
    mem = httpx.get(f"{envoy.admin}/memory").json()
    rss_kb = 0
    for line in open(f"/proc/{envoy.proc.pid}/status"):
        if line.startswith("VmRSS:"):
            rss_kb = int(line.split()[1])
    return {"allocated": int(mem["allocated"]), "heap": int(mem["heap_size"]), "rss": rss_kb * 1024}


def disconnect_many(envoy, n: int) -> None:
    answered: list[str] = []

    def one(_):
        try:
            r = envoy.post(PATHS["chat"], request("chat"), timeout=0.05)
        except httpx.TimeoutException:
            return True
        answered.append(f"{r.status_code} {r.text[:120]}")
        return False
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        left = sum(pool.map(one, range(n)))
    # Every member answers after 300 ms, so no fusion answer can come back within the
    # client's 50 ms; on a heavily loaded machine one in a hundred requests has been seen
    # answered early, so allow 1 % and name what came back.
    assert left >= n - max(1, n // 100), f"only {left} of {n} clients left before the answer: {answered}"


def test_many_client_disconnects_mid_run(faults, mock):
    mock.script({m: "latency=300" for m in MEMBERS})
    disconnect_many(faults, 40)  # warm-up: connection pools, VM memory
    time.sleep(1.0)
    before = memory(faults)
    disconnects_before = gauge(faults, "fusion_client_disconnects_total")
    disconnect_many(faults, 200)
    # The orphaned callouts come back (300 ms) and are dropped; on a loaded machine the
    # disconnect accounting can take a few seconds, so poll with a bound.
    deadline = time.monotonic() + 15
    while (time.monotonic() < deadline
           and gauge(faults, "fusion_client_disconnects_total") - disconnects_before < 190):
        time.sleep(0.25)
    time.sleep(1.0)
    after = memory(faults)
    assert gauge(faults, "fusion_client_disconnects_total") - disconnects_before >= 190
    # Issue 16: a gone client's run holds its slot until its last callout has ended
    # (Envoy cancels none; here they answer after 300 ms), then frees it at once.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and gauge(faults, "fusion_active_runs") > 0:
        time.sleep(0.1)
    assert gauge(faults, "fusion_active_runs") == 0
    grew = {k: after[k] - before[k] for k in after}
    print(f"\n200 disconnects: memory before {before}, after {after}")
    assert grew["allocated"] < 16 << 20 and grew["rss"] < 32 << 20, grew
    # The VM is alive: the next fusion request is served normally.
    mock.reset()
    r, _ = timed(faults, "chat")
    assert r.status_code == 200 and r.json()["fusion"]["analysis"] is True


def test_vm_alive_after_faults(faults, mock, envoy, capsys):
    """Runs faults of its own (so it means something when run alone), then: both Envoys
    still serve fusion and their logs show no VM failure."""
    for directive in ("reset", "cut", "garbage", "status=500"):
        mock.script({"a": directive, "judge": directive})
        r, _ = timed(faults, "chat")
        assert r.status_code == 200, (directive, r.text[:300])
    mock.script({"outer": "reset"})
    r, _ = timed(faults, "chat", stream=True)
    assert r.status_code < 600
    mock.reset()
    for api in APIS:
        r, _ = timed(faults, api)
        assert r.status_code == 200 and r.json()["fusion"]["analysis"] is True
    failures = [line for e in (faults, envoy) for line in e.log_text().splitlines() if VM_FAILURE.search(line)]
    with capsys.disabled():
        print(f"\nfaults: {STATS['cases']} cases this session, VM failures {len(failures)}, hangs {STATS['hangs']}")
    assert failures == [], failures[:5]
