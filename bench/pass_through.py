#!/usr/bin/env python3
"""Pass-through cost of one or more filter modules against the floors (bench/floors),
the paired-median part of `make bench` part 1 alone: for each filter module, a GET
against the no-op floor and non-fusion 2 KB / 64 KB Chat POSTs against the body
floor, all in one loop that rotates request by request over one keep-alive
connection per Envoy; with two or more modules, each one against the one before.

Each repetition (--reps) starts fresh Envoys: one Envoy keeps a bias of its own
for its whole life (which worker and core its connection lands on, how the 64 KB
body arrives in reads), measured at up to 30 us at 64 KB between two Envoys running
the same module. --control adds a second Envoy running the floor itself (A/A): its
difference to the floor is that bias, the size of what one repetition can resolve.
The summary gives, per comparison, the median over repetitions and their range.

Usage: bench/pass_through.py [--samples 2000] [--reps 1] [--control] FILTER.wasm ...
(the floors must be built: dist/floor-noop.wasm, dist/floor-body.wasm; `make bench`
builds them, or scripts/build-wasm.sh with WASM_MANIFEST=bench/floors/Cargo.toml).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run  # noqa: E402
from harness import Envoy, Mock  # noqa: E402
from httpraw import build_request  # noqa: E402

CONTROL = "floor-copy"


def one_rep(mock: Mock, modules: list[Path], workloads: list, samples: int, control: bool,
            rep: int) -> dict[tuple[str, str], float]:
    """Fresh Envoys, one loop per workload; returns {(label, comparison): paired median}."""
    envoys: dict[str, Envoy] = {}
    out: dict[tuple[str, str], float] = {}
    try:
        for name, path in run.FLOORS.items():
            envoys[name] = Envoy(mock, name=f"pt-{name}", transform=run.with_module(path))
        for m in modules:
            envoys[m.name] = Envoy(mock, name=f"pt-{m.stem}", transform=run.with_module(m.resolve()))
        for label, floor, req in workloads:
            if control:
                envoys[CONTROL] = Envoy(mock, name="pt-control", transform=run.with_module(run.FLOORS[floor]))
            # The floor and every module in one loop, rotating request by request:
            # each round sees the same machine, so differences within a round are paired.
            sides = [floor] + ([CONTROL] if control else []) + [m.name for m in modules]
            lat = run.seq_latency({n: envoys[n].port for n in sides}, req, samples, mock)
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
        for rep in range(args.reps):
            for key, diff in one_rep(mock, args.modules, workloads, args.samples, args.control, rep + 1).items():
                results.setdefault(key, []).append(diff)
    finally:
        mock.stop()
    if args.reps > 1:
        print(f"\nsummary over {args.reps} repetitions (fresh Envoys each), paired medians:")
        for (label, what), diffs in results.items():
            print(f"{label}: {what}: median {statistics.median(diffs):+.1f} us "
                  f"(range {min(diffs):+.1f} .. {max(diffs):+.1f})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
