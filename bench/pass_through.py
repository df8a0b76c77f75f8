#!/usr/bin/env python3
"""Pass-through cost of one or more filter modules against the floors (bench/floors),
the paired-median part of `make bench` part 1 alone: for each filter module, a GET
against the no-op floor and non-fusion 2 KB / 64 KB Chat POSTs against the body
floor, all in one loop that rotates request by request over one keep-alive
connection per Envoy; with two or more modules, each one against the one before.

Usage: bench/pass_through.py [--samples 2000] FILTER.wasm ...
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("modules", nargs="+", type=Path)
    ap.add_argument("--samples", type=int, default=2000)
    args = ap.parse_args()
    workloads = [
        ("GET /bench/echo", "noop", build_request("GET", "/bench/echo", b"", {})),
        ("non-fusion Chat, 2 KB", "body", build_request("POST", "/v1/chat/completions", run.chat_body(2048),
                                                        {"content-type": "application/json"})),
        ("non-fusion Chat, 64 KB", "body", build_request("POST", "/v1/chat/completions", run.chat_body(65536),
                                                         {"content-type": "application/json"})),
    ]
    mock = Mock()
    envoys: dict[str, Envoy] = {}
    try:
        for name, path in run.FLOORS.items():
            envoys[name] = Envoy(mock, name=f"pt-{name}", transform=run.with_module(path))
        for m in args.modules:
            envoys[m.name] = Envoy(mock, name=f"pt-{m.stem}", transform=run.with_module(m.resolve()))
        for label, floor, req in workloads:
            # The floor and every module in one loop, rotating request by request:
            # each round sees the same machine, so differences within a round are paired.
            sides = [floor] + [m.name for m in args.modules]
            lat = run.seq_latency({n: envoys[n].port for n in sides}, req, args.samples, mock)
            mock.reset()
            for m in args.modules:
                diff = statistics.median(v - b for v, b in zip(lat[m.name], lat[floor]))
                print(f"{label}: {m.name} - {floor} floor, paired median {diff:+.1f} us "
                      f"({args.samples} rounds)", flush=True)
            for a, b in zip(args.modules[1:], args.modules):
                diff = statistics.median(x - y for x, y in zip(lat[a.name], lat[b.name]))
                print(f"{label}: {a.name} - {b.name}, paired median {diff:+.1f} us", flush=True)
    finally:
        for e in envoys.values():
            e.stop()
        mock.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
