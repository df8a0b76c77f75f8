#!/usr/bin/env python3
"""Envoy CPU per forced 3-member fusion turn (mock latency 0, idle subtracted),
the measurement of `make bench` part 6 alone, for one or more wasm modules side
by side: the modules take turns, `--reps` rounds, and each round's value is printed.
Next to it, the same Envoy's CPU per non-fusion Chat request (one downstream and
one upstream exchange): a fusion turn makes six such exchanges (the client's,
three members, the judge, the final answer), which Envoy spends CPU on whatever
the filter does.

With `--own`, each round also measures Envoy's own CPU for the same exchanges
without the filter (bench/run.py envoy_own_per_turn: the bodies the filter sent in
a warm-up turn, through an Envoy without the filter), and prints each module's
share: its CPU per turn minus that, round by round.

Usage: bench/cpu_turn.py [--turns 300] [--reps 3] [--own] [MODULE.wasm ...]
(no module: dist/fusion.wasm). Compare modules run in the same invocation only:
the machine's load moves the absolute numbers.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run  # noqa: E402
from harness import WASM, Envoy, Mock  # noqa: E402


def plain_body(marker: str) -> bytes:
    """A non-fusion Chat request (one upstream exchange through the same Envoy)."""
    return json.dumps({"model": "mock-a", "messages": [
        {"role": "user", "content": f"[bench {marker}] Why is the sky blue?"}]}).encode()


def cpu_per_request(envoy: Envoy, mock: Mock, make_body, n: int, idle_s: float) -> dict:
    """Envoy CPU (ms) per request of `make_body`, 4 at a time, idle rate subtracted
    (run.cpu_per_turn's method)."""
    pid = envoy.proc.pid
    run.run_turns(envoy.port, [(f"w-{i}", make_body(f"w-{i}")) for i in range(20)], 4)
    mock.reset()
    time.sleep(0.5)
    c0, t0 = run.cpu_s(pid), time.perf_counter()
    time.sleep(idle_s)
    idle_rate = (run.cpu_s(pid) - c0) / (time.perf_counter() - t0)
    work = [(f"c-{i}", make_body(f"c-{i}")) for i in range(n)]
    c0, t0 = run.cpu_s(pid), time.perf_counter()
    done = run.run_turns(envoy.port, work, 4)
    wall = time.perf_counter() - t0
    busy = run.cpu_s(pid) - c0
    mock.reset()
    ok = sum(t["ok"] for t in done)
    return {"ms": (busy - idle_rate * wall) * 1000 / max(1, ok), "ok": ok, "n": n,
            "cpu_s": busy, "wall_s": wall, "idle_ms_per_s": idle_rate * 1000}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("modules", nargs="*", type=Path)
    ap.add_argument("--turns", type=int, default=300)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--idle", type=float, default=3.0, help="seconds of idle CPU measured before each run")
    ap.add_argument("--own", action="store_true", help="also measure Envoy's own CPU for the same exchanges without the filter")
    args = ap.parse_args()
    modules = [m.resolve() for m in args.modules] or [WASM]
    out: dict[Path, list[float]] = {m: [] for m in modules}
    plain: dict[Path, list[float]] = {m: [] for m in modules}
    own: list[float] = []
    mock = Mock()
    try:
        calls = []
        if args.own:
            envoy = Envoy(mock, name="bench-cpu", transform=run.with_module(modules[0]))
            try:
                mock.reset()
                run.run_turns(envoy.port, [("own-0", run.forced_body("own-0"))], 1)
                calls = run.turn_calls(mock, "own-0")
            finally:
                envoy.stop()
        for rep in range(args.reps):
            k = rep % len(modules)
            for m in modules[k:] + modules[:k]:
                envoy = Envoy(mock, name="bench-cpu", transform=run.with_module(m))
                try:
                    t = cpu_per_request(envoy, mock, run.forced_body, args.turns, args.idle)
                    p = cpu_per_request(envoy, mock, plain_body, args.turns, args.idle)
                finally:
                    envoy.stop()
                out[m].append(t["ms"])
                plain[m].append(p["ms"])
                print(f"rep {rep + 1} {m.name}: {t['ms']:.3f} ms per fusion turn ({t['ok']}/{t['n']} ok, "
                      f"{t['cpu_s']:.2f} s CPU in {t['wall_s']:.1f} s, idle {t['idle_ms_per_s']:.1f} ms/s); "
                      f"{p['ms']:.3f} ms per non-fusion request ({p['ok']}/{p['n']} ok)", flush=True)
            if calls:
                o = run.envoy_own_per_turn(mock, {"cpu_turns": args.turns, "idle_cpu_s": args.idle},
                                           run.forced_body("own-0"), calls)
                own.append(o["cpu_ms_per_turn"])
                print(f"rep {rep + 1} Envoy's own CPU for the same exchanges without the filter: "
                      f"{o['cpu_ms_per_turn']:.3f} ms per turn (proxied {o['proxied']['cpu_ms']:.3f} - "
                      f"answered by Envoy {o['local']['cpu_ms']:.3f})", flush=True)
    finally:
        mock.stop()
    for m in modules:
        print(f"{m.name}: median {statistics.median(out[m]):.3f} ms per fusion turn, "
              f"{statistics.median(plain[m]):.3f} ms per non-fusion request, over {len(out[m])} runs: "
              + ", ".join(f"{x:.3f}" for x in out[m]))
        if own:
            share = [t - o for t, o in zip(out[m], own)]
            print(f"{m.name}: the filter's share (per round, total minus Envoy's own {statistics.median(own):.3f} ms "
                  f"median): median {statistics.median(share):.3f} ms: " + ", ".join(f"{x:.3f}" for x in share))
    return 0


if __name__ == "__main__":
    sys.exit(main())
