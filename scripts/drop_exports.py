#!/usr/bin/env python3
"""Removes named exports from a wasm module (in place), so that `wasm-opt` can
drop the code only they reach.

The proxy-wasm SDK exports every callback of the ABI, including those of
network filters, gRPC callouts, shared queues and foreign functions, which an
HTTP filter that uses none of them never receives; Envoy treats a callback the
module does not export as absent. Usage: drop_exports.py MODULE.wasm NAME... (bench/wasm_sizes.py imports its LEB128 reader)
"""

from __future__ import annotations

import sys
from pathlib import Path


def leb(buf: bytes, i: int) -> tuple[int, int]:
    out = shift = 0
    while True:
        b = buf[i]
        i += 1
        out |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return out, i


def enc(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def main() -> int:
    path, drop = Path(sys.argv[1]), set(sys.argv[2:])
    buf = path.read_bytes()
    out = bytearray(buf[:8])
    i, dropped = 8, []
    while i < len(buf):
        sid = buf[i]
        size, body = leb(buf, i + 1)
        end = body + size
        if sid == 7:  # export section
            count, j = leb(buf, body)
            kept = []
            for _ in range(count):
                n, k = leb(buf, j)
                name = buf[k : k + n].decode()
                k += n
                k += 1  # kind
                _, k = leb(buf, k)  # index
                if name in drop:
                    dropped.append(name)
                else:
                    kept.append(buf[j:k])
                j = k
            sec = enc(len(kept)) + b"".join(kept)
            out += bytes([7]) + enc(len(sec)) + sec
        else:
            out += buf[i:end]
        i = end
    missing = drop - set(dropped)
    if missing:
        print(f"drop_exports: not exported: {', '.join(sorted(missing))}", file=sys.stderr)
        return 1
    path.write_bytes(bytes(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
