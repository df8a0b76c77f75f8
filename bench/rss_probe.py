#!/usr/bin/env python3
"""Idle memory of Envoys side by side, broken down (issue 19's "where the memory goes").

Each argument starts one Envoy on the shipped envoy/demo.yaml (tests/harness.py):

    NAME=MODULE[,CONCURRENCY[,TEMPLATE]]

MODULE is `plain` (the wasm filter removed), `filter` (dist/fusion.wasm) or the path of
another .wasm (a floor, another build of the filter); TEMPLATE replaces envoy/demo.yaml.
Every Envoy gets the same 80 requests as part 6 of bench/run.py, then 3 s of rest; then
VmRSS and bench/run.py's memory_breakdown() (tcmalloc heap from admin /memory, wasm
linear memories and V8 code space from /proc/PID/smaps) are printed for each, and each
Envoy's VmRSS over the first one's.

    .venv/bin/python bench/rss_probe.py noop=dist/floor-noop.wasm filter=filter

Options (before the Envoys): `--rest 3,30` reads after 3 s and again after 30 s of rest
(is a difference still there once tcmalloc's background actions have run?);
`--rounds N` starts fresh Envoys N times and prints the median difference per reading.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from harness import RUN_DIR, Envoy, Mock  # noqa: E402
import run as bench  # noqa: E402


def main() -> int:
    specs = []
    rests = [3.0]
    rounds = 1
    args = sys.argv[1:]
    while args and args[0].startswith("--"):
        opt = args.pop(0)
        if opt == "--rest" and args:
            rests = sorted(float(x) for x in args.pop(0).split(","))
        elif opt == "--rounds" and args:
            rounds = int(args.pop(0))
        else:
            print(__doc__, file=sys.stderr)
            return 2
    for arg in args:
        if "=" not in arg:
            print(__doc__, file=sys.stderr)
            return 2
        name, rest = arg.split("=", 1)
        bits = rest.split(",")
        specs.append((name, bits[0], int(bits[1]) if len(bits) > 1 else 2, bits[2] if len(bits) > 2 else None))
    if not specs:
        print(__doc__, file=sys.stderr)
        return 2
    mock = Mock()
    results: list[dict] = []
    diffs: dict[float, dict[str, list[float]]] = {r: {name: [] for name, *_ in specs[1:]} for r in rests}
    try:
        for rnd in range(rounds):
            results.append(one_round(mock, specs, rests, rnd, rounds, diffs))
    finally:
        mock.stop()
    if rounds > 1:
        for rest in rests:
            for name, ds in diffs[rest].items():
                print(f"after {rest:g} s: {name} - {specs[0][0]}: median {statistics.median(ds):+.1f} MiB "
                      f"over {rounds} rounds ({', '.join(f'{d:+.1f}' for d in ds)})")
    RUN_DIR.mkdir(exist_ok=True)
    (RUN_DIR / "rss-probe.json").write_text(json.dumps(results, indent=1))
    return 0


def one_round(mock: Mock, specs: list, rests: list[float], rnd: int, rounds: int, diffs: dict) -> dict:
    envoys: dict[str, Envoy] = {}
    out: dict = {}
    try:
        for name, module, conc, template in specs:
            kw: dict = {}
            if module == "plain":
                kw["template"] = bench.plain_template()
            elif module != "filter":
                kw["transform"] = bench.with_module(Path(module).resolve())
            if template:
                kw["template"] = Path(template)
            envoys[name] = Envoy(mock, name=f"rss-probe-{name}", concurrency=conc, **kw)
        bench.warm_up(envoys.values())
        t0 = time.monotonic()
        for rest in rests:
            time.sleep(max(0.0, t0 + rest - time.monotonic()))
            out[rest] = {}
            for name, e in envoys.items():
                b = bench.memory_breakdown(e.proc.pid, e)
                b["rss_kb"] = bench.rss_kb(e.proc.pid)
                out[rest][name] = b
            first = specs[0][0]
            for name, b in out[rest].items():
                over = ""
                if name != first:
                    d = (b["rss_kb"] - out[rest][first]["rss_kb"]) / 1024
                    diffs[rest][name].append(d)
                    over = f" ({d:+.1f} over {first})"
                print(f"[round {rnd + 1}/{rounds}, {rest:g} s] {name}: VmRSS {b['rss_kb'] / 1024:.1f} MiB{over} = "
                      f"anonymous {b['anon_kb'] / 1024:.1f} + file "
                      f"{b['file_kb'] / 1024:.1f}; tcmalloc live {b.get('heap_allocated_kb', 0) / 1024:.1f}, free "
                      f"{b.get('heap_pageheap_free_kb', 0) / 1024:.1f}, caches {b.get('heap_total_thread_cache_kb', 0) / 1024:.1f}, "
                      f"released {b.get('heap_pageheap_unmapped_kb', 0) / 1024:.1f}; wasm linear memory "
                      f"{b['wasm_memory_kb'] / 1024:.2f} MiB in {b['wasm_memories']} VMs; V8 code space "
                      f"{b['code_space_kb'] / 1024:.1f} MiB", flush=True)
    finally:
        for e in envoys.values():
            e.stop()
    return {str(k): v for k, v in out.items()}


if __name__ == "__main__":
    sys.exit(main())
