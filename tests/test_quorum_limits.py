"""Issue: quorum and grace (stop waiting for a slow member once enough answered), and
the limits against unbounded consumption: concurrent runs per worker, bytes per
request and per callout answer."""

import concurrent.futures
import json
import re
import time

import pytest

from harness import Envoy, demo_fusion_config

CHAT = "/v1/chat/completions"


def chat(model="fusion", **extra):
    body = {"model": model, "messages": [{"role": "user", "content": "Is tea healthy?"}]}
    body.update(extra)
    return body


def call(mock, model):
    [c] = [c for c in mock.calls() if c["model"] == model]
    return c


@pytest.fixture(scope="module")
def quorum(mock):
    config = demo_fusion_config()
    config["min_panel_answers"] = 2
    config["panel_grace_ms"] = 150
    e = Envoy(mock, name="quorum", fusion_config=config)
    yield e
    e.stop()


def test_judge_starts_after_quorum_plus_grace_not_the_straggler(quorum, mock):
    # mock-c is 10x slower than the others; the judge is slow enough that the
    # straggler still answers inside the turn.
    mock.script({"mock-a": "latency=100", "mock-b": "latency=120", "mock-c": "latency=1200",
                 "mock-judge": "latency=1500"})
    r = quorum.post(CHAT, chat())
    assert r.status_code == 200, r.text
    fusion = r.json()["fusion"]
    judge = call(mock, "mock-judge")
    second = max(call(mock, m)["end_ms"] for m in ("mock-a", "mock-b"))
    straggler = call(mock, "mock-c")
    # The judge started one grace period after the second answer, long before the straggler.
    assert 100 <= judge["start_ms"] - second < 600, (judge["start_ms"], second)
    assert judge["start_ms"] < straggler["end_ms"] - 500
    prompt = json.dumps(judge["body"]["messages"])
    assert "mock-c" not in prompt and 'n=\\"3\\"' not in prompt and 'n=\\"2\\"' in prompt
    panel = {m["model"]: m for m in fusion["panel"]}
    assert panel["mock-c"]["status"] == "late" and panel["mock-c"]["failure_reason"] == "late"
    # It answered during the judge's call: its usage still counts.
    assert panel["mock-c"]["usage"]["output_tokens"] == straggler["usage"]["output_tokens"] > 0
    assert r.headers["x-fusion-panel"] == "ok=2, failed=0, late=1"
    final = call(mock, "mock-outer")
    result = json.loads(final["body"]["messages"][-1]["content"])
    assert {"model": "mock-c", "reason": "late"} in result["failed_models"]
    assert 250 <= fusion["panel_wait_ms"] < 900


def test_unusable_answers_never_count_toward_the_quorum(quorum, mock):
    mock.script({"mock-a": "empty", "mock-b": "latency=50", "mock-c": "latency=400"})
    r = quorum.post(CHAT, chat())
    assert r.status_code == 200, r.text
    panel = {m["model"]: m["status"] for m in r.json()["fusion"]["panel"]}
    # An empty answer is not an answer: the run waited for mock-c to reach two.
    assert panel == {"mock-a": "failed", "mock-b": "ok", "mock-c": "ok"}


def test_default_waits_for_every_member(envoy, mock):
    mock.script({"mock-c": "latency=600"})
    r = envoy.post(CHAT, chat())
    assert r.status_code == 200
    # mock-c answers 600 ms after it was called: the judge starts no earlier. (Compared with
    # mock-c's start, not its logged end: the mock logs the end after the answer is written,
    # which the filter may already have read.)
    assert call(mock, "mock-judge")["start_ms"] >= call(mock, "mock-c")["start_ms"] + 600
    assert all(m["status"] == "ok" for m in r.json()["fusion"]["panel"])


def limited(mock, name, **limits):
    config = demo_fusion_config()
    config["limits"].update(limits)
    return Envoy(mock, name=name, fusion_config=config, concurrency=1)


@pytest.mark.parametrize("policy", ["reject", "pass_through"])
def test_concurrent_runs_per_worker_are_capped(mock, policy):
    e = limited(mock, f"cap-{policy}", max_concurrent_runs=2, on_overload=policy)
    try:
        mock.script({"mock-a": "latency=800", "mock-b": "latency=800", "mock-c": "latency=800"})
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            first = [pool.submit(e.post, CHAT, chat()) for _ in range(2)]
            time.sleep(0.3)  # both runs are now waiting on their 800 ms panel
            later = [pool.submit(e.post, CHAT, chat()) for _ in range(2)]
            replies = [f.result() for f in first + later]
        statuses = sorted(r.status_code for r in replies)
        fused = [r for r in replies if r.status_code == 200 and "fusion" in r.json()]
        assert len(fused) == 2, [r.text[:200] for r in replies]
        others = [r for r in replies if r not in fused]
        if policy == "reject":
            assert statuses == [200, 200, 429, 429]
            for r in others:
                err = r.json()["error"]
                assert "limits.max_concurrent_runs" in err["message"] and err["type"] == "rate_limit_error"
        else:
            # Sent on without fusion: the configured outer model answers directly.
            for r in others:
                assert r.status_code == 200 and "fusion" not in r.json()
                assert r.json()["model"] == "mock-outer"
        assert re.search(r"^fusion_overloaded_total(\{\})? 2$", e.stats(), re.M), e.stats()[-500:]
        # Slots come back: a later request runs fusion again.
        mock.reset()
        assert "fusion" in e.post(CHAT, chat()).json()
    finally:
        e.stop()


def test_request_and_answer_byte_limits(mock):
    e = limited(mock, "bytes", max_request_bytes=4096, max_response_bytes=2000)
    try:
        big = chat(messages=[{"role": "user", "content": "x" * 5000}])
        r = e.post(CHAT, big)
        assert r.status_code == 413 and "limits.max_request_bytes" in r.json()["error"]["message"]
        assert mock.calls() == []
        # A panel answer larger than max_response_bytes is not read: that member failed.
        mock.script({"mock-b": "words=2000"})
        r = e.post(CHAT, chat())
        assert r.status_code == 200, r.text
        panel = {m["model"]: m for m in r.json()["fusion"]["panel"]}
        assert panel["mock-b"]["failure_reason"] == "response_too_large"
        assert panel["mock-a"]["status"] == "ok"
    finally:
        e.stop()
