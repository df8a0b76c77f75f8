"""Every Node example the docs show, run as written against the demo (Envoy + mock).

The code blocks are read from the docs themselves (each marked `<!-- test: node NAME -->`
right above its ```js fence), so a doc and this test cannot drift apart. They run through
tests/clients/doc_example.mjs with the official `openai` and `@anthropic-ai/sdk` npm
packages pinned in tests/clients/package.json; the assertions are about what the example
shows its user: what it prints, the answer text and the fusion report it reads."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from harness import CLIENTS_DIR, ROOT, node, require

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MARK = re.compile(r"<!-- test: node ([\w-]+) -->\n```js\n(.*?)\n```", re.S)
# Every ```js block in the docs that talks to an SDK must be marked (and so run here).
JS_BLOCK = re.compile(r"```js\n(.*?)\n```", re.S)
REPORT_FIELDS = {"run_id", "mode", "outcome", "panel", "judge", "final", "usage", "cost"}


def examples() -> dict[str, str]:
    out = {}
    for doc in DOCS:
        for name, code in MARK.findall(doc.read_text()):
            assert name not in out, f"two Node examples named {name}"
            out[name] = code
    return out


def run_example(envoy, name: str, *variables: str) -> tuple[list[list], dict]:
    """Runs the example; returns what it printed (one list of arguments per console.log)
    and the named variables at its end."""
    require(CLIENTS_DIR / "node_modules" / "openai", "the npm clients (scripts/setup.sh clients)")
    require(CLIENTS_DIR / "node_modules" / "@anthropic-ai" / "sdk", "the npm clients (scripts/setup.sh clients)")
    proc = subprocess.run([str(node()), "doc_example.mjs", envoy.url, *variables], input=examples()[name],
                          cwd=CLIENTS_DIR, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"{name} exited {proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    # The SDKs warn on stderr about what a user would notice too (deprecations, retries).
    assert not [l for l in proc.stderr.splitlines() if l.strip()], proc.stderr[-2000:]
    logs = [json.loads(line[4:]) for line in proc.stdout.splitlines() if line.startswith("LOG ")]
    found = [json.loads(line[5:]) for line in proc.stdout.splitlines() if line.startswith("VARS ")]
    assert len(found) == 1, proc.stdout[-2000:]
    return logs, found[0]


def assert_report(report: dict, mode: str = "alias") -> None:
    assert isinstance(report, dict) and REPORT_FIELDS <= set(report), report
    assert report["mode"] == mode and report["outcome"] == "ok", report
    assert [m["status"] for m in report["panel"]] == ["ok", "ok", "ok"], report["panel"]
    assert report["run_id"].startswith("fr-"), report


def assert_tool_result(result: dict) -> None:
    assert set(result) >= {"status", "analysis", "responses", "failed_models"}, result
    assert result["status"] == "ok" and result["failed_models"] == [], result
    assert [r["model"] for r in result["responses"]] == ["mock-a", "mock-b", "mock-c"], result
    assert all(r["content"] for r in result["responses"]), result
    assert isinstance(result["analysis"], dict) and result["analysis"], result


def test_every_node_block_in_the_docs_is_marked_and_known():
    blocks = [code for doc in DOCS for code in JS_BLOCK.findall(doc.read_text())
              if "openai" in code or "anthropic" in code]
    assert len(blocks) == len(examples()) == 2, (len(blocks), sorted(examples()))
    assert sorted(examples()) == ["include-header", "report-and-tool-results"]


def test_include_header_example(envoy):
    """docs/observability.md: x-fusion-include with the OpenAI and Anthropic Node SDKs."""
    logs, v = run_example(envoy, "include-header", "r")
    # console.log(r.fusion.analysis, r.fusion.responses): the judge's analysis and the panel's answers.
    analysis, responses = logs[0]
    assert isinstance(analysis, dict) and analysis, analysis
    assert [x["model"] for x in responses] == ["mock-a", "mock-b", "mock-c"], responses
    assert all(x["text"] for x in responses), responses
    # The answer the user reads, and the report beside it.
    assert v["r"]["choices"][0]["message"]["content"], v["r"]
    assert_report(v["r"]["fusion"])
    # The streamed Anthropic message_delta event's fusion (the only one printed after).
    assert len(logs) == 2, logs
    streamed = logs[1][0]
    assert_report(streamed)
    assert streamed["analysis"], streamed


def test_report_and_tool_results_example(envoy):
    """docs/observability.md, "Reading it from the SDKs" (Node)."""
    _, v = run_example(envoy, "report-and-tool-results", "c", "r", "m", "report", "result", "message")
    # Chat Completions: the answer and its report.
    assert v["c"]["choices"][0]["message"]["content"], v["c"]
    assert_report(v["c"]["fusion"])
    # Responses: one message item with the answer (no fusion_call item); the report and its
    # tool result (the panel's answers and the analysis).
    assert [i["type"] for i in v["r"]["output"]] == ["message"], v["r"]["output"]
    assert v["r"]["output"][0]["content"][0]["text"], v["r"]["output"]
    assert_report(v["r"]["fusion"])
    assert_tool_result(v["r"]["fusion"]["tool_result"])
    # Messages: the text answer and the report.
    assert [b["type"] for b in v["m"]["content"]] == ["text"] and v["m"]["content"][0]["text"], v["m"]
    assert_report(v["m"]["fusion"])
    # The last reads: the streamed message_delta's report, the Messages tool result, and the
    # stream's final message (the answer text, no `fusion`).
    assert_report(v["report"])
    assert_tool_result(v["result"])
    assert "fusion" not in v["message"], v["message"]
    assert [b["type"] for b in v["message"]["content"]] == ["text"] and v["message"]["content"][0]["text"], v["message"]
