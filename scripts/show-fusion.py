#!/usr/bin/env python3
"""Prints a fusion response readably: the panel's answers, the judge's analysis, the final
answer and the run's numbers. Reads one JSON response (Chat, Responses or Messages) on stdin:

    curl -s .../v1/responses -H 'content-type: application/json' \
      -d '{"model": "fusion", "input": "Why is the sky blue?"}' | python3 scripts/show-fusion.py

Panel answers and analysis come from the `fusion` report when the request asked for them
(`x-fusion-include: analysis,responses`), otherwise from the fusion tool result the
response carries in `fusion.tool_result`. Standard library only.
"""

import json
import sys
import textwrap

KEYS = ["consensus", "contradictions", "partial_coverage", "unique_insights", "blind_spots"]


def tool_result(body: dict) -> dict | None:
    """The fusion tool result carried in the response: `fusion.tool_result` (what the filter
    writes today), or an older answer's `fusion_call` item / `fusion_tool_result` block."""
    carried = (body.get("fusion") or {}).get("tool_result")
    if isinstance(carried, str):
        try:
            carried = json.loads(carried)
        except ValueError:
            carried = None
    if isinstance(carried, dict):
        return carried
    for item in body.get("output") or []:
        if item.get("type") == "fusion_call":
            out = item.get("output")
            return json.loads(out) if isinstance(out, str) else out
    for block in body.get("content") or []:
        if block.get("type") == "fusion_tool_result":
            c = block.get("content")
            if isinstance(c, list):
                c = "".join(p.get("text", "") for p in c if isinstance(p, dict))
            return json.loads(c) if isinstance(c, str) else c
    return None


def final_text(body: dict) -> str:
    if "choices" in body:
        return (body["choices"][0].get("message") or {}).get("content") or ""
    if "output" in body:
        return "".join(p.get("text", "") for item in body["output"] if item.get("type") == "message"
                       for p in item.get("content") or [])
    return "".join(b.get("text", "") for b in body.get("content") or [] if b.get("type") == "text")


def money(cost) -> str:
    """A cost with 7 decimals; null (a call without a price) stays visible as such."""
    return "null (unpriced)" if cost is None else f"{cost:.7f}"


def wrap(text: str, indent: str) -> str:
    return "\n".join(textwrap.fill(line, 100, initial_indent=indent, subsequent_indent=indent)
                     if line.strip() else "" for line in text.split("\n"))


def main() -> int:
    raw = sys.stdin.read()
    try:
        body = json.loads(raw)
    except ValueError:
        print(raw)
        return 1
    if "error" in body and "fusion" not in body:
        print(json.dumps(body, indent=2))
        return 1
    fusion = body.get("fusion") or {}
    result = tool_result(body) or {}
    responses = fusion.get("responses") if isinstance(fusion.get("responses"), list) else result.get("responses")
    analysis = fusion.get("analysis") if isinstance(fusion.get("analysis"), dict) else result.get("analysis")
    for i, r in enumerate(responses or [], 1):
        print(f"== Response {i}: {r.get('model')}")
        print(wrap(r.get("content") or r.get("text") or "", "   "))
    for f in result.get("failed_models") or []:
        print(f"== failed: {f.get('model')} ({f.get('reason')})")
    if result.get("status") == "error":
        print(f"== the panel failed: {result.get('failure_reason')}")
    if analysis:
        print("\n== The judge's analysis")
        for key in KEYS:
            print(f"   {key}:")
            for item in analysis.get(key) or ["(none)"]:
                print(wrap(f"- {item}", "     "))
    print(f"\n== Final answer ({body.get('model')})")
    print(wrap(final_text(body), "   "))
    if fusion:
        calls = fusion.get("panel", []) + [fusion.get("judge") or {}] + fusion.get("final", [])
        print("\n== The run: mode %s, %s ms, cost %s" % (fusion.get("mode"), fusion.get("wall_ms"), money(fusion.get("cost"))))
        for c in calls:
            if c:
                u = c.get("usage") or {}
                print("   %-12s %-7s %5s ms  %4s in %4s out  cost %s" % (
                    c.get("model"), c.get("status"), c.get("latency_ms"), u.get("input_tokens"),
                    u.get("output_tokens"), money(c.get("cost"))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
