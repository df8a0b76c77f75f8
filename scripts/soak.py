#!/usr/bin/env python3
"""Soak: many fusion turns with injected faults through one Envoy, bounded concurrency.

Every client must get a well-formed answer (a complete response in its API's shape, or a
native error where the outer model itself was made to fail) within the turn budget, and
Envoy's memory must settle. Faults are mock directives in model names (panel members and
judge through a fusion tool declaration, the outer model as the request's model), so
concurrent turns never share a script.

    .venv/bin/python scripts/soak.py [--turns 10000] [--fault-rate 0.2] [--concurrency 64] [--write-doc]

`make soak` runs it with --write-doc: the summary replaces the soak section of
docs/robustness.md. Exit status 1 when a client got a malformed or late answer, or memory
kept growing."""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import random
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import httpx  # noqa: E402

from harness import Envoy, Mock, demo_fusion_config  # noqa: E402

PATHS = {"chat": "/v1/chat/completions", "responses": "/v1/responses", "messages": "/v1/messages"}
DOC = ROOT / "docs" / "robustness.md"
BEGIN, END = "<!-- soak:begin -->", "<!-- soak:end -->"

# (directive, what the member's report must say: a failure reason, a set of them, or None for ok)
MEMBER_FAULTS = [
    ("reset", "unreachable"), ("cut", "unreachable"), ("hang", "timeout"), ("latency=2600", "timeout"),
    ("slow_body=300", None), ("slow_body=4000", {"timeout", "unreachable"}), ("status=500", "http_500"),
    ("status=503", "http_503"), ("status=429", "rate_limited"), ("status=402", "insufficient_credits"),
    ("malformed", "unusable_response"), ("sse,malformed", "unusable_response"), ("sse", None),
    ("garbage", "unusable_response"), ("empty", "empty_response"),
]
JUDGE_FAULTS = ["prose", "malformed", "status=500", "status=429", "reset", "cut", "hang", "garbage", "empty"]
# The outer model as a callout (non-streaming clients): a native error, or truncation on a hang.
OUTER_FAULTS = ["status=500", "status=429", "status=402", "reset", "malformed", "garbage", "hang"]


@dataclass
class Turn:
    n: int
    api: str
    stream: bool
    kind: str  # alias | declared
    fault_role: str | None = None
    directive: str | None = None
    member: int = 0


@dataclass
class Result:
    turn: Turn
    ok: bool
    elapsed: float
    outcome: str
    problem: str = ""


@dataclass
class Totals:
    outcomes: dict = field(default_factory=dict)
    problems: list = field(default_factory=list)
    latencies: list = field(default_factory=list)
    by_role: dict = field(default_factory=dict)


def plan(n: int, rng: random.Random, fault_rate: float) -> Turn:
    api = rng.choice(list(PATHS))
    stream = rng.random() < 0.2
    t = Turn(n, api, stream, "declared" if rng.random() < 0.5 else "alias")
    if rng.random() < fault_rate:
        roles = ["member"] * 6 + ["judge"] * 2 + ([] if stream else ["outer"] * 2)
        t.fault_role = rng.choice(roles)
        t.kind = "declared"
        if t.fault_role == "member":
            t.member = rng.randrange(3)
            t.directive = rng.choice(MEMBER_FAULTS)[0]
        elif t.fault_role == "judge":
            t.directive = rng.choice(JUDGE_FAULTS)
        else:
            t.directive = rng.choice(OUTER_FAULTS)
    return t


def body_of(t: Turn) -> dict:
    question = f"Soak turn {t.n}: is tea healthy?"
    if t.api == "chat":
        body = {"messages": [{"role": "user", "content": question}]}
    elif t.api == "responses":
        body = {"input": question}
    else:
        body = {"max_tokens": 300, "messages": [{"role": "user", "content": question}]}
    if t.kind == "alias":
        body["model"] = "fusion"
    else:
        panel = ["mock-a", "mock-b", "mock-c"]
        judge = "mock-judge"
        outer = "mock-outer"
        if t.fault_role == "member":
            panel[t.member] += ":" + t.directive
        elif t.fault_role == "judge":
            judge += ":" + t.directive
        elif t.fault_role == "outer":
            outer += ":" + t.directive
        body["model"] = outer
        body["tools"] = [{"type": "fusion", "panel": [{"model": m} for m in panel], "judge": {"model": judge}}]
        body["tool_choice"] = {"type": "tool", "name": "fusion"} if t.api == "messages" else "required"
    if t.stream:
        body["stream"] = True
        if t.api == "chat":
            body["stream_options"] = {"include_usage": True}
    return body


def native_error(api: str, body: dict) -> bool:
    if api == "messages":
        e = body.get("error")
        return body.get("type") == "error" and isinstance(e, dict) and isinstance(e.get("message"), str)
    e = body.get("error")
    return isinstance(e, dict) and {"message", "type", "param", "code"} <= set(e)


def complete_json(api: str, body: dict) -> str:
    """'' when the body is a complete response of its API, else what is wrong."""
    if api == "chat":
        ch = body.get("choices") or [{}]
        if body.get("object") != "chat.completion" or ch[0].get("finish_reason") not in ("stop", "length"):
            return "not a complete chat.completion"
    elif api == "responses":
        if body.get("object") != "response" or body.get("status") not in ("completed", "incomplete"):
            return "not a complete response"
    elif body.get("type") != "message" or body.get("stop_reason") not in ("end_turn", "pause_turn", "max_tokens"):
        return "not a complete message"
    return "" if isinstance(body.get("fusion"), dict) else "no fusion report"


def complete_stream(api: str, text: str) -> str:
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        data = [line[5:].strip() for line in block.split("\n") if line.startswith("data:")]
        if data:
            events.append("\n".join(data))
    if not events:
        return "empty stream"
    try:
        parsed = [None if e == "[DONE]" else json.loads(e) for e in events]
    except ValueError:
        return "an event is not JSON"
    if api == "chat":
        return "" if events[-1] == "[DONE]" else "no [DONE]"
    last = parsed[-1] or {}
    want = ("response.completed", "response.incomplete") if api == "responses" else ("message_stop",)
    return "" if last.get("type") in want else f"ends with {last.get('type')}"


def truncated(api: str, body: dict) -> bool:
    if api == "chat":
        return (body.get("choices") or [{}])[0].get("finish_reason") == "length"
    if api == "responses":
        return body.get("status") == "incomplete"
    return body.get("stop_reason") == "pause_turn"


def check_report(t: Turn, body: dict) -> str:
    """For non-streaming declared turns: the injected fault shows where it should."""
    report = body.get("fusion") or {}
    panel = report.get("panel") or []
    if t.fault_role == "member" and len(panel) == 3:
        want = dict(MEMBER_FAULTS)[t.directive]
        m = panel[t.member]
        if want is None:
            return "" if m.get("status") == "ok" else f"member {m} should be ok"
        wanted = want if isinstance(want, set) else {want}
        if m.get("status") != "failed" or m.get("failure_reason") not in wanted:
            return f"member {m.get('model')}: {m.get('status')}/{m.get('failure_reason')}, want {sorted(wanted)}"
        others = [p for i, p in enumerate(panel) if i != t.member]
        if any(p.get("status") != "ok" for p in others):
            return f"a healthy member failed: {others}"
    if t.fault_role == "judge" and report.get("analysis") is not False:
        return "judge fault but analysis present"
    if t.fault_role is None and report.get("analysis") is not True:
        return f"clean turn without analysis: judge {report.get('judge')}"
    return ""


def run_turn(client: httpx.Client, url: str, t: Turn, budget_s: float) -> Result:
    start = time.monotonic()
    try:
        r = client.post(url + PATHS[t.api], json=body_of(t), timeout=budget_s + 30)
    except httpx.HTTPError as e:
        return Result(t, False, time.monotonic() - start, "transport_error", repr(e))
    elapsed = time.monotonic() - start
    outcome, problem = "ok", ""
    ctype = r.headers.get("content-type", "")
    if t.stream and r.status_code == 200:
        problem = complete_stream(t.api, r.text) if ctype.startswith("text/event-stream") else "stream not SSE"
    else:
        try:
            body = r.json()
        except ValueError:
            body = None
        if body is None:
            problem = f"{r.status_code} body is not JSON: {r.text[:120]!r}"
        elif r.status_code == 200:
            problem = complete_json(t.api, body)
            if not problem and not t.stream:
                problem = check_report(t, body)
            if t.fault_role == "outer" and t.directive != "hang" and not problem:
                problem = "outer fault but a 200"
            if truncated(t.api, body):
                outcome = "truncated"
        elif native_error(t.api, body):
            outcome = f"native_{r.status_code}"
            if t.fault_role != "outer":
                problem = f"a native error without an outer fault: {body}"
        else:
            problem = f"{r.status_code} not in the API's error shape: {r.text[:120]!r}"
    if not problem and t.fault_role:
        outcome = f"{t.fault_role}_fault_" + ("degraded" if outcome == "ok" else outcome)
    if elapsed > budget_s:
        problem = problem or f"answered after {elapsed:.2f}s, past the {budget_s}s turn budget"
    return Result(t, not problem, elapsed, outcome if not problem else "BAD", problem)


def memory(envoy: Envoy) -> dict:
    mem = httpx.get(f"{envoy.admin}/memory").json()
    rss = 0
    with open(f"/proc/{envoy.proc.pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024
    return {"allocated": int(mem["allocated"]), "heap": int(mem["heap_size"]), "rss": rss}


def mib(n: int) -> str:
    return f"{n / (1 << 20):.1f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--turns", type=int, default=int(os.environ.get("SOAK_TURNS", 10_000)))
    ap.add_argument("--fault-rate", type=float, default=0.2)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--tool-ms", type=int, default=2000)
    ap.add_argument("--turn-ms", type=int, default=5000)
    ap.add_argument("--margin-s", type=float, default=2.0, help="scheduling slack over the turn budget")
    ap.add_argument("--seed", type=int, default=8)
    ap.add_argument("--write-doc", action="store_true", help=f"write the summary into {DOC.relative_to(ROOT)}")
    args = ap.parse_args()

    config = demo_fusion_config()
    config["limits"].update({"tool_timeout_ms": args.tool_ms, "turn_timeout_ms": args.turn_ms})
    budget_s = args.turn_ms / 1000 + args.margin_s
    rng = random.Random(args.seed)
    turns = [plan(i, rng, args.fault_rate) for i in range(args.turns)]

    mock = Mock()
    envoy = Envoy(mock, name="soak", fusion_config=config, log_level="warning")
    samples: list[tuple[int, dict]] = [(0, memory(envoy))]
    totals = Totals()
    lock = threading.Lock()
    started = time.monotonic()
    print(f"[soak] {args.turns} turns, {args.fault_rate:.0%} faults, concurrency {args.concurrency}, "
          f"tool {args.tool_ms} ms, turn {args.turn_ms} ms (+{args.margin_s} s slack); Envoy {envoy.url}", flush=True)
    try:
        limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency)
        with httpx.Client(limits=limits) as client, \
                concurrent.futures.ThreadPoolExecutor(args.concurrency) as pool:
            futures = [pool.submit(run_turn, client, envoy.url, t, budget_s) for t in turns]
            for done, fut in enumerate(concurrent.futures.as_completed(futures), 1):
                res = fut.result()
                with lock:
                    totals.outcomes[res.outcome] = totals.outcomes.get(res.outcome, 0) + 1
                    totals.latencies.append(res.elapsed)
                    if not res.ok:
                        totals.problems.append(res)
                    if res.turn.fault_role:
                        key = f"{res.turn.fault_role}:{res.turn.directive}"
                        totals.by_role[key] = totals.by_role.get(key, 0) + 1
                if done % 1000 == 0 or done == len(futures):
                    samples.append((done, memory(envoy)))
                    httpx.post(f"{mock.url}/__mock/reset")  # bound the mock's call log
                    m = samples[-1][1]
                    print(f"[soak] {done} turns, {time.monotonic() - started:.0f} s, problems "
                          f"{len(totals.problems)}, Envoy allocated {mib(m['allocated'])} MiB, heap "
                          f"{mib(m['heap'])} MiB, RSS {mib(m['rss'])} MiB", flush=True)
        time.sleep(3)
        samples.append((-1, memory(envoy)))
        stats = envoy.stats()
        vm_failures = [line for line in envoy.log_text().splitlines()
                       if "panicked" in line or "Wasm VM failed" in line or "wasm trap" in line]
    finally:
        envoy.stop()
        mock.stop()

    wall = time.monotonic() - started
    lat = sorted(totals.latencies)
    p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]  # noqa: E731
    faulted = sum(1 for t in turns if t.fault_role)
    # Settled: after the first half, RSS moves by less than 5 % (and 32 MiB).
    mid = samples[len(samples) // 2][1]
    end = samples[-1][1]
    growth = end["rss"] - mid["rss"]
    settled = growth < max(32 << 20, mid["rss"] // 20)
    active = [line for line in stats.splitlines() if line.startswith("fusion_active_runs")]
    ok = not totals.problems and not vm_failures and settled
    lines = [
        f"Command: `make soak` (`.venv/bin/python scripts/soak.py --turns {args.turns} --fault-rate "
        f"{args.fault_rate} --concurrency {args.concurrency} --seed {args.seed} --write-doc`), "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, Envoy 1.40, 2 workers, on a shared 2-core machine.",
        "",
        f"- turns: **{args.turns}** ({faulted} with an injected fault, {faulted / args.turns:.1%}); "
        f"client APIs chat/responses/messages at random, 20 % streaming; concurrency {args.concurrency}",
        f"- budgets: tool {args.tool_ms} ms, turn {args.turn_ms} ms; a turn counts as late past "
        f"{budget_s:.1f} s",
        f"- result: **{len(totals.problems)} malformed or late answers**, VM failures in the log: "
        f"{len(vm_failures)}, `{active[0] if active else 'fusion_active_runs ?'}` at the end",
        f"- wall time {wall:.0f} s ({args.turns / wall:.0f} turns/s); latency p50 {p(0.5) * 1000:.0f} ms, "
        f"p99 {p(0.99) * 1000:.0f} ms, max {lat[-1] * 1000:.0f} ms",
        "- outcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(totals.outcomes.items())),
        f"- memory settled: **{'yes' if settled else 'NO'}** (RSS from turn {samples[len(samples) // 2][0]} "
        f"to the end: {growth / (1 << 20):+.1f} MiB)",
        "",
        "| after turn | Envoy allocated (MiB) | Envoy heap (MiB) | process RSS (MiB) |",
        "|---|---|---|---|",
    ]
    for n, m in samples:
        label = "start" if n == 0 else ("end (+3 s idle)" if n == -1 else str(n))
        lines.append(f"| {label} | {mib(m['allocated'])} | {mib(m['heap'])} | {mib(m['rss'])} |")
    if totals.problems:
        lines += ["", "Problems (first 10):", ""]
        lines += [f"- turn {r.turn.n} {r.turn.api}{' stream' if r.turn.stream else ''} "
                  f"{r.turn.fault_role}:{r.turn.directive}: {r.problem}" for r in totals.problems[:10]]
    summary = "\n".join(lines)
    print("\n" + summary)
    if args.write_doc:
        text = DOC.read_text() if DOC.exists() else f"# Robustness\n\n## Soak\n\n{BEGIN}\n{END}\n"
        if BEGIN not in text:
            text += f"\n## Soak\n\n{BEGIN}\n{END}\n"
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1] if END in rest else ""
        DOC.write_text(f"{head}{BEGIN}\n{summary}\n{END}{tail}")
        print(f"[soak] wrote {DOC.relative_to(ROOT)}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
