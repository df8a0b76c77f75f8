#!/usr/bin/env python3
"""Regenerates the sample outputs in README.md and docs/observability.md from a real run, so
they cannot drift from what following the docs produces.

Starts what `make run` starts (the demo mock, Envoy with dist/fusion.wasm and
envoy/demo.yaml) on free ports, then runs what the docs' "Reproducing the samples" section
shows: one Chat turn with mock-c scripted to answer 429 (x-request-id 4f1c2b7e), one clean
turn, the metrics, and the Responses request `make run` prints. Each sample sits between
`<!-- sample:NAME -->` and `<!-- /sample:NAME -->` lines in the docs; only those blocks are
rewritten.

    .venv/bin/python scripts/gen-docs-samples.py           # rewrite the samples
    .venv/bin/python scripts/gen-docs-samples.py --check   # exit 1 if a sample is out of date

--check compares with timings (latency_ms, wall_ms, panel_wait_ms, ms columns, the log
line's timestamp and thread id) masked: they differ from run to run; tokens, costs, texts
and counts must match exactly.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from harness import DemoMock, Envoy  # noqa: E402

RUN_ID = "4f1c2b7e"
QUESTION = "Why is the sky blue?"
DOCS = [ROOT / "README.md", ROOT / "docs" / "observability.md"]


# ---------------------------------------------------------------- formatting

ORDER = ["run_id", "request_id", "mode", "outcome", "truncated_by", "preset", "panel", "judge", "analysis", "responses", "synthesizer", "final",
         "rounds", "invocations", "wall_ms", "panel_wait_ms", "usage", "cost", "unpriced_models"]


def ordered(fusion: dict) -> dict:
    """The report's keys in the order the docs' table explains them (JSON order means nothing)."""
    rank = {k: i for i, k in enumerate(ORDER)}
    return dict(sorted(fusion.items(), key=lambda kv: rank.get(kv[0], len(ORDER))))


def compact(value, depth: int = 0, inline_from: int = 2, indent: int = 2) -> str:
    """JSON with one line per key down to `inline_from` levels, single lines below and for
    objects and arrays without nested ones."""
    leaf = isinstance(value, (dict, list)) and not any(
        isinstance(v, (dict, list)) for v in (value.values() if isinstance(value, dict) else value))
    if depth >= inline_from or not isinstance(value, (dict, list)) or not value or leaf:
        return json.dumps(value, ensure_ascii=False)
    pad, inner = " " * (indent * depth), " " * (indent * (depth + 1))
    if isinstance(value, dict):
        items = [f"{inner}{json.dumps(k)}: {compact(v, depth + 1, inline_from)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    items = [f"{inner}{compact(v, depth + 1, inline_from)}" for v in value]
    return "[\n" + ",\n".join(items) + f"\n{pad}]"


def shorten(text: str, n: int = 70) -> str:
    return text if len(text) <= n else text[: n - 1].rstrip() + "…"


def elide_usage(call: dict) -> dict:
    return {k: ("{…}" if k == "usage" else v) for k, v in call.items()}


def readme_response(body: dict) -> str:
    """The README's short view of a chat.completion: one line per part."""
    msg = body["choices"][0]["message"]
    f = body["fusion"]
    lines = [
        "{",
        f'  "object": "chat.completion", "model": {json.dumps(body["model"])},',
        '  "choices": [{"index": 0, "finish_reason": %s, "message": {"role": "assistant", "content": %s}}],'
        % (json.dumps(body["choices"][0]["finish_reason"]), json.dumps(shorten(msg["content"]), ensure_ascii=False)),
        f'  "usage": {json.dumps(body["usage"])},',
        '  "fusion": {',
        f'    "run_id": {json.dumps(f["run_id"])}, "mode": {json.dumps(f["mode"])}, "preset": {json.dumps(f["preset"])},',
        '    "panel": [' + ",\n              ".join(json.dumps(elide_usage(m), ensure_ascii=False).replace('"{…}"', "{…}") for m in f["panel"]) + "],",
        f'    "judge": {json.dumps(elide_usage(f["judge"]), ensure_ascii=False).replace(chr(34) + "{…}" + chr(34), "{…}")},',
    ]
    rest = {k: v for k, v in ordered(f).items() if k not in ("run_id", "mode", "preset", "panel", "judge")}
    for k, v in rest.items():
        if k == "final":
            v = [elide_usage(c) for c in v]
        lines.append(f"    {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)},".replace('"{…}"', "{…}"))
    lines[-1] = lines[-1].rstrip(",")
    lines += ["  }", "}"]
    return "\n".join(lines)


def log_line(envoy: Envoy) -> str:
    for _ in range(50):
        for line in envoy.log_text().splitlines():
            if f'"request_id":"{RUN_ID}"' in line and '"event":"fusion_run"' in line:
                return line.strip()
        time.sleep(0.1)
    raise SystemExit(f"no fusion_run log line for {RUN_ID} in {envoy.log_path}")


def short_log(line: str) -> str:
    """The README's shortened log line: from `[info]`, nested usage and panel elided."""
    head, _, payload = line.partition("fusion: {")
    record = json.loads("{" + payload)
    for call in record.get("final") or []:
        call["usage"] = "{…}"
    if record.get("judge"):
        record["judge"]["usage"] = "{…}"
    record["panel"] = ["…"] + [dict(m, usage="{…}") for m in record["panel"] if m.get("status") != "ok"]
    text = json.dumps(record, separators=(",", ":"), ensure_ascii=False)
    text = text.replace('"{…}"', "{…}").replace('"…"', "…")
    return "[info][wasm] wasm log fusion fusion fusion: " + text


def flushed_stats(envoy: Envoy, runs: int) -> str:
    """/stats/prometheus once the duration histograms hold `runs` runs (they appear at
    Envoy's stats flush, every 5 s by default)."""
    for _ in range(100):
        text = envoy.stats()
        counts = re.findall(r"^fusion_run_duration_seconds_count\{[^}]*\} (\S+)$", text, re.M)
        if sum(float(c) for c in counts) >= runs:
            break
        time.sleep(0.2)
    return text


def metrics(text: str) -> str:
    """Non-zero fusion_ series, histograms by their _count."""
    out = []
    for line in text.splitlines():
        if not line.startswith("fusion_") or "_bucket" in line or "_sum" in line:
            continue
        if line.rsplit(" ", 1)[-1] in ("0", "0.0"):
            continue
        out.append(line)
    return "\n".join(out)


def duration_histogram(text: str) -> str:
    """The run-time histogram of the clean run, as Envoy writes it (buckets, sum, count)."""
    lines = [line for line in text.splitlines()
             if line == "# TYPE fusion_run_duration_seconds histogram"
             or (line.startswith("fusion_run_duration_seconds_") and 'outcome="ok"' in line)]
    return "\n".join(lines)


# ---------------------------------------------------------------- the run

def run() -> dict[str, str]:
    mock = DemoMock()
    envoy = Envoy(mock, name="docs-samples")
    try:
        chat = {"model": "fusion", "messages": [{"role": "user", "content": QUESTION}]}
        mock.script({"mock-c": "status=429"})
        res = envoy.post("/v1/chat/completions", chat, headers={"x-request-id": RUN_ID})
        res.raise_for_status()
        body = res.json()
        mock.script({"mock-c": ""})
        envoy.post("/v1/chat/completions", chat).raise_for_status()
        samples = {
            "chat-response": readme_response(body),
            "fusion-object": '"fusion": ' + compact(ordered(body["fusion"])),
            "headers": "\n".join(f"{h}: {res.headers[h]}" for h in ("x-fusion-run-id", "x-fusion-panel")),
            "run-log-full": log_line(envoy),
            "run-log-short": short_log(log_line(envoy)),
        }
        stats = flushed_stats(envoy, 2)
        samples["metrics"] = metrics(stats)
        samples["duration-histogram"] = duration_histogram(stats)
        # The request `make run` prints, through scripts/show-fusion.py.
        demo = envoy.post("/v1/responses", {"model": "fusion", "input": QUESTION})
        demo.raise_for_status()
        shown = subprocess.run([sys.executable, str(ROOT / "scripts" / "show-fusion.py")], input=demo.text,
                               capture_output=True, text=True, check=True)
        samples["demo"] = shown.stdout.rstrip()
        return samples
    finally:
        envoy.stop()
        mock.stop()


# ---------------------------------------------------------------- the docs

BLOCK = re.compile(r"(<!-- sample:([\w-]+) -->\n```\w*\n)(.*?)(\n```\n<!-- /sample:\2 -->)", re.S)


def mask(text: str) -> str:
    text = re.sub(r'"(latency_ms|wall_ms|panel_wait_ms)": ?\d+', r'"\1":#', text)
    # Run ids are unique per run (fr-<ms>-<seq>-<hash>).
    text = re.sub(r"fr-[0-9a-f]+-[0-9a-f]+-[0-9a-f]+", "fr-#", text)
    text = re.sub(r"call_fusion_[0-9A-Za-z]+", "call_fusion_#", text)
    text = re.sub(r"\b\d+ ms\b", "# ms", text)
    text = re.sub(r"^\[[^]]*\]\[\d+\]", "[#][#]", text, flags=re.M)
    # Durations: which bucket a run falls in, and the sum, are timings.
    return re.sub(r"^(fusion_\w*_seconds_(?:bucket|sum)\{[^}]*\}) \S+$", r"\1 #", text, flags=re.M)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="fail if a sample is out of date")
    args = ap.parse_args()
    samples = run()
    stale, used = [], set()
    for doc in DOCS:
        text = doc.read_text()

        def fill(m: re.Match) -> str:
            name = m.group(2)
            if name not in samples:
                raise SystemExit(f"{doc.name}: unknown sample {name!r}")
            used.add(name)
            if mask(m.group(3)) != mask(samples[name]):
                stale.append(f"{doc.relative_to(ROOT)}: {name}")
            return m.group(1) + samples[name] + m.group(4)

        new = BLOCK.sub(fill, text)
        if not args.check and new != text:
            doc.write_text(new)
    if args.check:
        if stale:
            print("out of date (run scripts/gen-docs-samples.py):\n  " + "\n  ".join(stale))
            return 1
        print(f"{len(used)} samples up to date")
        return 0
    print(f"wrote {len(used)} samples: {', '.join(sorted(used))}" + (f"; changed: {', '.join(stale)}" if stale else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
