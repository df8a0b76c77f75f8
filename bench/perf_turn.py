#!/usr/bin/env python3
"""Where Envoy's CPU per forced fusion turn goes, by `perf` (bench/cpu-findings.md).

Records `perf record -F 999 -g` on a fresh Envoy (the shipped demo configuration
with MODULE.wasm) over N forced 3-member turns (bench/run.py forced_body, 4 at a
time, mock latency 0), then on an Envoy without the filter over the same turn's
exchanges (bench/run.py envoy_own_per_turn: "proxied" minus "local"), and prints
per turn, in ms of CPU (at 999 Hz a sample is about 1 ms):

- by where the sample's code is (the Envoy binary, V8's JIT code: the module's
  wasm, the kernel, libc), with and without the filter;
- the samples with the module's wasm on their stack whose own code is not wasm:
  the host calls (grouped by the host function's return address in Envoy's
  proxy-wasm glue, the binary has no symbols) and V8's runtime called from wasm.

`--count ADDR,...` counts how often each of those return addresses runs per turn
(uprobes through `perf stat`, on this Envoy process only), which names the host
functions by how many calls of each signature a turn makes
(bench/wasm_callbacks.mjs --turn lists them).

Runs as root (perf). Usage: bench/perf_turn.py [--turns 5000] [--count A,B] [MODULE.wasm]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run  # noqa: E402
from harness import WASM, Envoy, Mock  # noqa: E402


def record(pid: int, out: Path, work) -> float:
    """perf record on `pid` while `work()` runs; returns Envoy's CPU seconds over it."""
    perf = subprocess.Popen(["perf", "record", "-F", "999", "-g", "-o", str(out), "-p", str(pid)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1)
    c0 = run.cpu_s(pid)
    work()
    cpu = run.cpu_s(pid) - c0
    time.sleep(0.5)
    perf.send_signal(2)
    perf.wait()
    return cpu


def stacks(data: Path):
    """Each sample's stack, leaf first, as (address, where) pairs."""
    text = subprocess.run(["perf", "script", "-i", str(data), "-F", "ip,dso"],
                          capture_output=True, text=True, check=True).stdout
    cur: list[tuple[int, str]] = []
    for line in text.splitlines() + [""]:
        line = line.strip()
        if not line:
            if cur:
                yield cur
            cur = []
            continue
        ip, dso = line.split(None, 1)
        dso = dso.strip("()")
        where = ("wasm (V8 JIT)" if "perf-" in dso or "JIT" in dso else "envoy" if dso.endswith("/envoy")
                 else "kernel" if "kernel" in dso else dso.rsplit("/", 1)[-1])
        cur.append((int(ip, 16), where))


def split(data: Path) -> tuple[collections.Counter, collections.Counter, collections.Counter]:
    """(samples by where the leaf is; from-wasm samples by the frame wasm called;
    from-wasm samples by host function under the busiest such frame)."""
    leaf: collections.Counter = collections.Counter()
    called: collections.Counter = collections.Counter()
    by_host: dict[int, collections.Counter] = collections.defaultdict(collections.Counter)
    for s in stacks(data):
        leaf[s[0][1]] += 1
        i = next((k for k, (_, w) in enumerate(s) if w == "wasm (V8 JIT)"), None)
        if i is None or i == 0:
            continue
        called[s[i - 1][0]] += 1
        if i >= 2:
            by_host[s[i - 1][0]][s[i - 2][0]] += 1
    tramp = called.most_common(1)[0][0] if called else None
    return leaf, called, by_host.get(tramp, collections.Counter()) if tramp else collections.Counter()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("module", nargs="?", type=Path, default=WASM)
    ap.add_argument("--turns", type=int, default=5000)
    ap.add_argument("--count", default="", help="return addresses to count per turn (uprobes), comma-separated")
    args = ap.parse_args()
    module, n = args.module.resolve(), args.turns
    tmp = Path(tempfile.mkdtemp(prefix="perf-turn-"))
    mock = Mock()
    try:
        envoy = Envoy(mock, name="perf-turn", transform=run.with_module(module))
        try:
            run.run_turns(envoy.port, [(f"w-{i}", run.forced_body(f"w-{i}")) for i in range(50)], 4)
            calls = run.turn_calls(mock, "w-0")
            mock.reset()

            def turns() -> None:
                for k in range(0, n, 500):
                    work = [(f"p-{k + i}", run.forced_body(f"p-{k + i}")) for i in range(min(500, n - k))]
                    ok = sum(t["ok"] for t in run.run_turns(envoy.port, work, 4))
                    mock.reset()
                    if ok != len(work):
                        raise RuntimeError(f"{len(work) - ok} turns failed")

            cpu = record(envoy.proc.pid, tmp / "turn.perf", turns)
            if args.count:
                probes = [a.strip() for a in args.count.split(",") if a.strip()]
                binary = Path(f"/proc/{envoy.proc.pid}/exe").resolve()
                for a in probes:
                    subprocess.run(["perf", "probe", "-q", "-x", str(binary), "-a", f"r{a}={a}"], check=True)
                try:
                    stat = subprocess.Popen(["perf", "stat", "-x", ",", "-e", "probe_envoy:*", "-p",
                                             str(envoy.proc.pid)], stderr=subprocess.PIPE, text=True)
                    time.sleep(1)
                    run.run_turns(envoy.port, [(f"q-{i}", run.forced_body(f"q-{i}")) for i in range(200)], 4)
                    time.sleep(0.5)
                    stat.send_signal(2)
                    counts = stat.communicate()[1]
                finally:
                    subprocess.run(["perf", "probe", "-q", "-d", "probe_envoy:*"], check=False)
                mock.reset()
        finally:
            envoy.stop()

        def post(path: str, body: bytes) -> bytes:
            return run.build_request("POST", path, body, {"content-type": "application/json"})

        proxied = [post(run.LOCAL_PREFIX + "/v1/chat/completions", run.forced_body("w-0"))] + \
            [post(p, b) for p, b in calls]
        local = [post(run.LOCAL_PREFIX + p, b) for p, b in calls]
        plain = Envoy(mock, template=run.plain_local_template(), name="perf-turn-plain")
        try:
            asyncio.run(run._exchanges(plain.port, [proxied] * 20 + [local] * 20, 4))
            mock.reset()
            own_cpu = {}
            for name, work in (("proxied", proxied), ("local", local)):
                own_cpu[name] = record(plain.proc.pid, tmp / f"{name}.perf",
                                       lambda: asyncio.run(run._exchanges(plain.port, [work] * n, 4)))
                mock.reset()
        finally:
            plain.stop()
    finally:
        mock.stop()

    leaf, called, by_host = split(tmp / "turn.perf")
    own_p = split(tmp / "proxied.perf")[0]
    own_l = split(tmp / "local.perf")[0]
    print(f"{module.name}: {n} forced turns, Envoy CPU {cpu * 1000 / n:.3f} ms per turn from /proc; "
          f"without the filter (proxied - local) {(own_cpu['proxied'] - own_cpu['local']) * 1000 / n:.3f} ms")
    print(f"{'where the sample was, ms per turn':40} {'filter':>8} {'own':>8} {'filter - own':>12}")
    for w in sorted(set(leaf) | set(own_p), key=lambda w: -leaf[w]):
        f, o = leaf[w] / n, (own_p[w] - own_l[w]) / n
        print(f"{w:40} {f:8.3f} {o:8.3f} {f - o:12.3f}")
    print(f"{'total':40} {sum(leaf.values()) / n:8.3f} {(sum(own_p.values()) - sum(own_l.values())) / n:8.3f}")
    print(f"called from wasm (stack has wasm, leaf is not): {sum(called.values()) / n:.3f} ms per turn")
    for addr, c in called.most_common(5):
        print(f"  through {addr:#x}: {c / n:.3f} ms")
    print("  host functions under the busiest (return address: ms per turn)")
    for addr, c in by_host.most_common(10):
        print(f"    {addr:#x}: {c / n:.3f} ms")
    if args.count:
        print("calls per turn (uprobes, 200 turns):")
        for line in counts.splitlines():
            p = line.split(",")
            if len(p) > 2 and p[0].strip().isdigit():
                print(f"  {p[2]}: {int(p[0]) / 200:.1f}")
    print(f"perf data: {tmp}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
