"""The module's wasm time per request inside Envoy's own V8, by `perf` (make bench part 1).

bench/wasm_callbacks.mjs times the module's callbacks in Node's V8: deterministic, but
Node's V8 is not the one inside Envoy, and the two compile the same SIMD loop differently
(the 64 KB alias scan measured about 3.6 us over the body floor in Node and about 6 in
Envoy). This module measures it in Envoy: `perf record` samples an Envoy process while wrk
drives one workload through it; the samples whose code is V8's JIT code (proxy-wasm's V8
writes no perf map, so the module's compiled wasm shows as `[JIT] tid N`; V8's wasm-to-host
wrappers are there too) are the module's share of the Envoy process's CPU over the run
(/proc), divided by the requests served. The filter and its floor alternate, and the
difference of each round is paired; the median over the rounds is reported with its range.

Needs `perf` and the right to sample another process (root, or perf_event_paranoid <= 1);
without them `over_floor` returns None and make bench prints n/a.
"""

from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path


def available() -> bool:
    if shutil.which("perf") is None:
        return False
    if os.geteuid() == 0:
        return True
    try:
        return int(Path("/proc/sys/kernel/perf_event_paranoid").read_text()) <= 1
    except (OSError, ValueError):
        return False


def jit_share(data: Path) -> float | None:
    """The fraction of a recording's samples whose code is V8's JIT code."""
    rep = subprocess.run(["perf", "report", "-i", str(data), "--sort", "dso", "--stdio", "-q"],
                         capture_output=True, text=True)
    if rep.returncode != 0:
        return None
    total = jit = 0.0
    for line in rep.stdout.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+(.*)$", line)
        if m:
            total += float(m.group(1))
            if m.group(2).strip().startswith("[JIT]"):
                jit += float(m.group(1))
    return jit / total if total > 0 else None


def jit_us_per_request(pid: int, drive, cpu_s) -> float | None:
    """`drive()` runs the workload and returns the requests it served; `cpu_s(pid)` reads the
    process's CPU seconds. Returns the JIT code's CPU per request, in us."""
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "perf.data"
        perf = subprocess.Popen(["perf", "record", "-F", "999", "-o", str(data), "-p", str(pid)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        c0 = cpu_s(pid)
        served = drive()
        cpu = cpu_s(pid) - c0
        perf.send_signal(2)
        perf.wait(timeout=60)
        share = jit_share(data)
    if share is None or served <= 0:
        return None
    return cpu * share / served * 1e6


def over_floor(filter_pid: int, floor_pid: int, drive_for, cpu_s, rounds: int) -> dict | None:
    """The filter's JIT time per request minus the floor's, paired by round (they alternate,
    the order flipping every round). `drive_for(pid)` runs the workload against that Envoy."""
    if not available():
        return None
    filt: list[float] = []
    floor: list[float] = []
    for r in range(rounds):
        order = [(filter_pid, filt), (floor_pid, floor)]
        for pid, out in (order if r % 2 == 0 else order[::-1]):
            v = jit_us_per_request(pid, lambda p=pid: drive_for(p), cpu_s)
            if v is None:
                return None
            out.append(v)
    diffs = [a - b for a, b in zip(filt, floor)]
    return {"median": statistics.median(diffs), "lo": min(diffs), "hi": max(diffs),
            "filter_us": statistics.median(filt), "floor_us": statistics.median(floor), "rounds": rounds}
