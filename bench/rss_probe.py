#!/usr/bin/env python3
"""Idle memory of Envoys side by side, broken down (issue 19's "where the memory goes").

Each argument starts one Envoy on the shipped envoy/demo.yaml (tests/harness.py):

    NAME=MODULE[,CONCURRENCY[,TEMPLATE]]

MODULE is `plain` (the wasm filter removed), `filter` (dist/fusion.wasm) or the path of
another .wasm (a floor, another build of the filter); TEMPLATE replaces envoy/demo.yaml.
Every Envoy gets the same 80 requests as part 6 of bench/run.py, then 3 s of rest; then
VmRSS and bench/run.py's memory_breakdown() (tcmalloc heap from admin /memory, wasm
linear memories and V8 code space from /proc/PID/smaps) are printed for each.

    .venv/bin/python bench/rss_probe.py noop=dist/floor-noop.wasm filter=filter
"""

from __future__ import annotations

import json
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
    for arg in sys.argv[1:]:
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
    envoys: dict[str, Envoy] = {}
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
        time.sleep(3)
        out = {}
        for name, e in envoys.items():
            b = bench.memory_breakdown(e.proc.pid, e)
            b["rss_kb"] = bench.rss_kb(e.proc.pid)
            out[name] = b
            print(f"{name}: VmRSS {b['rss_kb'] / 1024:.1f} MiB = anonymous {b['anon_kb'] / 1024:.1f} + file "
                  f"{b['file_kb'] / 1024:.1f}; tcmalloc live {b.get('heap_allocated_kb', 0) / 1024:.1f}, free "
                  f"{b.get('heap_pageheap_free_kb', 0) / 1024:.1f}, caches {b.get('heap_total_thread_cache_kb', 0) / 1024:.1f}, "
                  f"released {b.get('heap_pageheap_unmapped_kb', 0) / 1024:.1f}; wasm linear memory "
                  f"{b['wasm_memory_kb'] / 1024:.2f} MiB in {b['wasm_memories']} VMs; V8 code space "
                  f"{b['code_space_kb'] / 1024:.1f} MiB")
        RUN_DIR.mkdir(exist_ok=True)
        (RUN_DIR / "rss-probe.json").write_text(json.dumps(out, indent=1))
    finally:
        for e in envoys.values():
            e.stop()
        mock.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
