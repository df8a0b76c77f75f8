#!/usr/bin/env python3
"""TurboFan's scratch memory per function of a wasm module, measured in seconds with Node.

Envoy's V8 compiles every function with TurboFan at start-up, and tcmalloc keeps much of
the compiler's freed scratch memory (its "zone") afterwards: the module whose largest
functions need the most zone idles at the highest RSS (bench/memory-findings.md). Node's
V8 reports each function's zone with --trace-wasm-compilation-times; the values come from
an older V8 than Envoy's, so compare modules with each other, not with Envoy's numbers.

Usage: bench/turbofan_zone.py MODULE.wasm [--top N] [--grep WORD]

Prints the largest zone any one function needs, their sum, and the functions needing the
most (names from the module's `name` section: build it unstripped, see bench/wasm_sizes.py).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from wasm_sizes import parse  # noqa: E402

LINE = re.compile(r"#(\d+) using TurboFan, took [\d.]+ ms and (\d+) / (\d+) max/total bytes; "
                  r"bodysize (\d+) codesize (\d+)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("module")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--grep", action="append", default=[])
    args = ap.parse_args()
    path = Path(args.module).resolve()
    script = f"new WebAssembly.Module(require('fs').readFileSync({str(path)!r}))"
    # One thread, every function compiled eagerly with TurboFan, as Envoy's V8 runtime does.
    out = subprocess.run(["node", "--single-threaded", "--no-liftoff", "--no-wasm-lazy-compilation",
                          "--trace-wasm-compilation-times", "-e", script],
                         capture_output=True, text=True, check=True).stdout
    _, _, names, _ = parse(path.read_bytes())
    rows = []
    for m in LINE.finditer(out):
        index, peak, total, body, code = map(int, m.groups())
        rows.append((peak, total, body, code, names.get(index, f"function #{index}")))
    if not rows:
        print("no TurboFan compilation reported (is node's V8 new enough?)", file=sys.stderr)
        return 1
    rows.sort(reverse=True)
    print(f"{path}: {len(rows)} functions; largest zone {rows[0][0]:,} bytes; "
          f"machine code {sum(r[3] for r in rows):,} bytes")
    for word in args.grep:
        sel = [r for r in rows if word in r[4]]
        print(f"functions naming `{word}`: {len(sel)}, largest zone {max((r[0] for r in sel), default=0):,}")
    print(f"\n{'zone peak':>10} {'zone total':>11} {'wasm':>6} {'x86':>6}  function")
    for peak, total, body, code, name in rows[:args.top]:
        print(f"{peak:>10,} {total:>11,} {body:>6,} {code:>6,}  {name[:110]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
