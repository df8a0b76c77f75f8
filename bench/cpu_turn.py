#!/usr/bin/env python3
"""Envoy CPU per forced 3-member fusion turn (mock latency 0, idle subtracted),
the measurement of `make bench` part 6 alone, for one or more wasm modules side
by side: the modules take turns, `--reps` rounds, and each round's value is printed.

Usage: bench/cpu_turn.py [--turns 300] [--reps 3] [MODULE.wasm ...]
(no module: dist/fusion.wasm). Compare modules run in the same invocation only:
the machine's load moves the absolute numbers.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run  # noqa: E402
from harness import WASM, Envoy, Mock  # noqa: E402


def per_turn(mock: Mock, module: Path, turns: int, idle_s: float) -> dict:
    """run.cpu_per_turn on an Envoy that loads `module`."""
    original = run.Envoy

    def envoy_with_module(m, **kw):
        return original(m, transform=run.with_module(module), **kw)

    run.Envoy = envoy_with_module
    try:
        return run.cpu_per_turn(mock, {"idle_cpu_s": idle_s, "cpu_turns": turns})
    finally:
        run.Envoy = original


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("modules", nargs="*", type=Path)
    ap.add_argument("--turns", type=int, default=300)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--idle", type=float, default=3.0, help="seconds of idle CPU measured before each run")
    args = ap.parse_args()
    modules = [m.resolve() for m in args.modules] or [WASM]
    out: dict[Path, list[float]] = {m: [] for m in modules}
    mock = Mock()
    try:
        for rep in range(args.reps):
            k = rep % len(modules)
            for m in modules[k:] + modules[:k]:
                c = per_turn(mock, m, args.turns, args.idle)
                out[m].append(c["cpu_ms_per_turn"])
                print(f"rep {rep + 1} {m.name}: {c['cpu_ms_per_turn']:.3f} ms per turn "
                      f"({c['ok']}/{c['turns']} ok, {c['envoy_cpu_s']:.2f} s CPU in {c['wall_s']:.1f} s, "
                      f"idle {c['idle_cpu_per_s'] * 1000:.1f} ms/s)", flush=True)
    finally:
        mock.stop()
    for m, v in out.items():
        print(f"{m.name}: median {statistics.median(v):.3f} ms per turn over {len(v)} runs: "
              + ", ".join(f"{x:.3f}" for x in v))
    return 0


if __name__ == "__main__":
    sys.exit(main())
