#!/usr/bin/env python3
"""Pass-through cost of one or more filter modules against the floors (bench/floors),
the paired-median part of `make bench` part 1 alone (part 1 reuses this module's
functions, with wrk and the wasm side added): for each filter module, a GET
against the no-op floor and non-fusion 2 KB / 64 KB Chat POSTs against the body
floor, all in one loop that visits every Envoy once per round, in a shuffled order, over one
keep-alive connection per Envoy; with two or more modules, each one against the one before.

Each repetition (--reps) starts fresh Envoys: one Envoy keeps a bias of its own
for its whole life (which worker and core its connection lands on, how the 64 KB
body arrives in reads), measured at up to 30 us at 64 KB between two Envoys running
the same module. --control adds a second Envoy running the floor itself (A/A): its
difference to the floor is that bias, the size of what one repetition can resolve.
The summary gives, per comparison, the median over repetitions and their range.
--pin takes the placement out: every Envoy runs one worker, all its threads on the
last CPU, and this client and the mock on the first (not `make bench`'s setup).

Usage: bench/pass_through.py [--samples 2000] [--reps 1] [--control] [--pin] FILTER.wasm ...
(the floors must be built: dist/floor-noop.wasm, dist/floor-body.wasm; `make bench`
builds them, or scripts/build-wasm.sh with WASM_MANIFEST=bench/floors/Cargo.toml).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import statistics
import subprocess
import time
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run  # noqa: E402
from harness import Envoy, Mock  # noqa: E402
from httpraw import SyncConn, build_request  # noqa: E402

CONTROL = "floor-copy"
WASM_CALLBACKS = Path(__file__).resolve().parent / "wasm_callbacks.mjs"


def over_reps(diffs: list[float]) -> dict:
    """One comparison over repetitions: the median, the range, every value."""
    return {"median": statistics.median(diffs), "lo": min(diffs), "hi": max(diffs), "reps": list(diffs)}


def control_spread(control: list[float]) -> float:
    """What the A/A control says the loop can resolve: the median over repetitions of
    the size (either sign) of the difference between two Envoys running the same module.
    Not the largest: one disturbed repetition (tens of us) would make any bound pass."""
    return statistics.median(abs(d) for d in control)


def wasm_side(modules: list[Path], requests: int, batches: int) -> dict:
    """bench/wasm_callbacks.mjs --json: the modules' callbacks for one request in
    Node's V8 against a stub host. Returns {workload: {module file name: {"host_calls",
    "calls", "us_per_request": [per batch]}}}; batch b of every module ran in one round."""
    proc = subprocess.run(["node", str(WASM_CALLBACKS), "--json", "--requests", str(requests),
                           "--batches", str(batches)] + [str(m) for m in modules],
                          capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"wasm_callbacks.mjs failed:\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return {w["workload"]: {m["module"]: m for m in w["modules"]} for w in out["workloads"]}


def wasm_over(side: dict, module: str, floor: str) -> dict:
    """A module's wasm time per request over a floor's: the median of the paired batch
    differences, with their interquartile range (the noise of this measure)."""
    d = sorted(a - b for a, b in zip(side[module]["us_per_request"], side[floor]["us_per_request"]))
    q = statistics.quantiles(d, n=4) if len(d) > 1 else [d[0]] * 3
    return {"median": statistics.median(d), "q1": q[0], "q3": q[2],
            "host_calls": side[module]["host_calls"], "floor_host_calls": side[floor]["host_calls"]}


def pin(pid: int, cpu: int) -> None:
    """Every thread of process `pid` onto `cpu`."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        os.sched_setaffinity(int(tid), {cpu})


class Placement:
    """Starts Envoys (pinned to the last CPU with --pin, one worker each)."""

    def __init__(self, mock: Mock, pinned: bool) -> None:
        self.mock, self.pinned = mock, pinned
        self.cpu = max(os.sched_getaffinity(0))
        if pinned:
            pin(os.getpid(), 0)
            pin(mock.proc.pid, 0)

    def envoy(self, name: str, module: Path) -> Envoy:
        e = Envoy(self.mock, name=name, transform=run.with_module(module), concurrency=1 if self.pinned else 2)
        if self.pinned:
            pin(e.proc.pid, self.cpu)
        return e


def latencies(ports: dict[str, int], request: bytes, rounds: int, mock: Mock, seed: int) -> dict[str, list[float]]:
    """Per-request latency (us), one keep-alive connection per Envoy, one request at a
    time, every Envoy once per round in a shuffled order (`make bench` part 1 uses it
    too). Not a fixed rotation: with three or more sides a rotation keeps their cyclic order, so each
    Envoy always follows the same one and pays for its trailing work (its log and
    stream teardown after the response), a bias of tens of us with the Envoys on
    one CPU."""
    rng = random.Random(seed)
    conns = {name: SyncConn(port) for name, port in ports.items()}
    samples: dict[str, list[float]] = {name: [] for name in ports}
    names = list(ports)
    try:
        for c in conns.values():
            for _ in range(50):
                if c.roundtrip(request)[0] != 200:
                    raise RuntimeError("warm-up request failed")
        gc.disable()
        for i in range(rounds):
            rng.shuffle(names)
            for name in names:
                t0 = time.perf_counter_ns()
                status, _ = conns[name].roundtrip(request)
                samples[name].append((time.perf_counter_ns() - t0) / 1000)
                if status != 200:
                    raise RuntimeError(f"{name} answered {status}")
            if i % 1000 == 999:
                mock.reset()  # the mock logs every call: keep its memory flat
    finally:
        gc.enable()
        for c in conns.values():
            c.close()
    return samples


def one_rep(place: Placement, modules: list[Path], workloads: list, samples: int, control: bool,
            rep: int) -> dict[tuple[str, str], float]:
    """Fresh Envoys, one loop per workload; returns {(label, comparison): paired median}."""
    mock = place.mock
    envoys: dict[str, Envoy] = {}
    out: dict[tuple[str, str], float] = {}
    try:
        for name, path in run.FLOORS.items():
            envoys[name] = place.envoy(f"pt-{name}", path)
        for m in modules:
            envoys[m.name] = place.envoy(f"pt-{m.stem}", m.resolve())
        for label, floor, req in workloads:
            if control:
                envoys[CONTROL] = place.envoy("pt-control", run.FLOORS[floor])
            # The floor and every module in one loop, each once per round: each round
            # sees the same machine, so differences within a round are paired.
            sides = [floor] + ([CONTROL] if control else []) + [m.name for m in modules]
            lat = latencies({n: envoys[n].port for n in sides}, req, samples, mock, seed=rep)
            mock.reset()
            if control:
                envoys.pop(CONTROL).stop()
            comparisons = [(s, floor) for s in sides[1:]]
            comparisons += [(a.name, b.name) for a, b in zip(modules[1:], modules)]
            for a, b in comparisons:
                diff = statistics.median(x - y for x, y in zip(lat[a], lat[b]))
                what = f"{a} - {b}" + (" floor" if b == floor else "")
                out[(label, what)] = diff
                print(f"rep {rep}: {label}: {what}, paired median {diff:+.1f} us ({samples} rounds)", flush=True)
    finally:
        for e in envoys.values():
            e.stop()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("modules", nargs="+", type=Path)
    ap.add_argument("--samples", type=int, default=2000, help="rounds per workload and repetition")
    ap.add_argument("--reps", type=int, default=1, help="repetitions, each with fresh Envoys")
    ap.add_argument("--control", action="store_true",
                    help="add an Envoy running the floor itself (A/A: the bias of one Envoy)")
    ap.add_argument("--pin", action="store_true",
                    help="one worker per Envoy, Envoys on the last CPU, client and mock on the first")
    args = ap.parse_args()
    workloads = [
        ("GET /bench/echo", "noop", build_request("GET", "/bench/echo", b"", {})),
        ("non-fusion Chat, 2 KB", "body", build_request("POST", "/v1/chat/completions", run.chat_body(2048),
                                                        {"content-type": "application/json"})),
        ("non-fusion Chat, 64 KB", "body", build_request("POST", "/v1/chat/completions", run.chat_body(65536),
                                                         {"content-type": "application/json"})),
    ]
    mock = Mock()
    results: dict[tuple[str, str], list[float]] = {}
    try:
        place = Placement(mock, args.pin)
        for rep in range(args.reps):
            for key, diff in one_rep(place, args.modules, workloads, args.samples, args.control, rep + 1).items():
                results.setdefault(key, []).append(diff)
    finally:
        mock.stop()
    if args.reps > 1:
        print(f"\nsummary over {args.reps} repetitions (fresh Envoys each), paired medians:")
        for (label, what), diffs in results.items():
            s = over_reps(diffs)
            print(f"{label}: {what}: median {s['median']:+.1f} us "
                  f"(range {s['lo']:+.1f} .. {s['hi']:+.1f})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
