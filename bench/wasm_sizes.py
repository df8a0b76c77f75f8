#!/usr/bin/env python3
"""Where the bytes of a wasm module go: sections, and code size per function and
per crate, from the module's `name` section (build it unstripped:
CARGO_PROFILE_RELEASE_STRIP=false, see docs/benchmarks.md).

Usage: bench/wasm_sizes.py MODULE.wasm [--top N] [--grep WORD]...
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
from drop_exports import leb  # noqa: E402  (the build's LEB128 reader)


SECTION = {0: "custom", 1: "type", 2: "import", 3: "function", 4: "table", 5: "memory", 6: "global",
           7: "export", 8: "start", 9: "element", 10: "code", 11: "data", 12: "datacount"}


def parse(buf: bytes) -> tuple[list[tuple[str, int]], list[int], dict[int, str], int]:
    """Sections (name, bytes), code body sizes (by defined function index), names
    (by function index), number of imported functions."""
    i = 8
    sections, bodies, names, imported = [], [], {}, 0
    while i < len(buf):
        sid = buf[i]
        size, j = leb(buf, i + 1)
        end = j + size
        name = SECTION.get(sid, str(sid))
        if sid == 0:
            n, k = leb(buf, j)
            cname = buf[k:k + n].decode(errors="replace")
            name = f"custom:{cname}"
            if cname == "name":
                k += n
                while k < end:
                    sub, k = buf[k], k + 1
                    sublen, k = leb(buf, k)
                    subend = k + sublen
                    if sub == 1:
                        count, m = leb(buf, k)
                        for _ in range(count):
                            idx, m = leb(buf, m)
                            ln, m = leb(buf, m)
                            names[idx] = buf[m:m + ln].decode(errors="replace")
                            m += ln
                    k = subend
        elif sid == 2:
            count, k = leb(buf, j)
            for _ in range(count):
                for _ in range(2):
                    ln, k = leb(buf, k)
                    k += ln
                kind = buf[k]
                k += 1
                if kind == 0:
                    _, k = leb(buf, k)
                    imported += 1
                elif kind == 1:
                    k += 1
                    flags, k = leb(buf, k)
                    _, k = leb(buf, k)
                    if flags & 1:
                        _, k = leb(buf, k)
                elif kind == 2:
                    flags, k = leb(buf, k)
                    _, k = leb(buf, k)
                    if flags & 1:
                        _, k = leb(buf, k)
                elif kind == 3:
                    k += 2
        elif sid == 10:
            count, k = leb(buf, j)
            for _ in range(count):
                bsize, k2 = leb(buf, k)
                bodies.append(bsize + (k2 - k))
                k = k2 + bsize
        sections.append((name, size))
        i = end
    return sections, bodies, demangle(names), imported


def demangle(names: dict[int, str]) -> dict[int, str]:
    """Rust v0 / legacy symbols to paths, through LLVM's llvm-cxxfilt (lld-22 installs it)."""
    tool = shutil.which("llvm-cxxfilt-22") or shutil.which("llvm-cxxfilt")
    if not tool or not names:
        return names
    keys = list(names)
    proc = subprocess.run([tool], input="\n".join(names[k] for k in keys), capture_output=True, text=True)
    lines = proc.stdout.split("\n")
    if proc.returncode != 0 or len(lines) < len(keys):
        return names
    return dict(zip(keys, lines))


def crate_of(name: str) -> str:
    """The crate a demangled Rust symbol belongs to: the trait impl's type for
    `<T as Trait>::f` (where the code comes from), else the first path segment."""
    n = re.sub(r"::h[0-9a-f]{16}$", "", name)
    m = re.match(r"<(?:&(?:mut )?)?([A-Za-z_][A-Za-z0-9_]*)", n)
    if m:
        return m.group(1)
    m = re.match(r"([A-Za-z_][A-Za-z0-9_]*)::", n)
    return m.group(1) if m else "(other)"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("module")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--grep", action="append", default=[], help="also total the functions whose name contains WORD")
    args = ap.parse_args()
    buf = Path(args.module).read_bytes()
    sections, bodies, names, imported = parse(buf)
    total = len(buf)
    print(f"{args.module}: {total:,} bytes")
    for name, size in sections:
        print(f"  section {name:<24} {size:>9,} bytes ({size / total * 100:5.1f} %)")
    funcs = [(names.get(imported + i, f"func[{imported + i}]"), size) for i, size in enumerate(bodies)]
    code = sum(s for _, s in funcs)
    by_crate: Counter = Counter()
    for name, size in funcs:
        by_crate[crate_of(name)] += size
    print(f"\ncode by crate (of {code:,} bytes of function bodies):")
    for crate, size in by_crate.most_common(args.top):
        print(f"  {size:>9,}  {size / code * 100:5.1f} %  {crate}")
    print(f"\nlargest functions:")
    for name, size in sorted(funcs, key=lambda f: -f[1])[: args.top]:
        print(f"  {size:>9,}  {name[:150]}")
    for word in args.grep:
        hits = [(n, s) for n, s in funcs if word in n]
        print(f"\nfunctions naming `{word}`: {len(hits)}, {sum(s for _, s in hits):,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
