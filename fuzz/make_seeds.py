"""Writes the seed corpus in fuzz/seeds/<target>/ from real answers of the mock
LLM server (all three APIs, JSON and SSE) and the requests the tests send.
Run from the repository root after `make build`: .venv/bin/python fuzz/make_seeds.py"""

from __future__ import annotations

import hashlib
import json
import re
import struct
import subprocess
import sys
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "fuzz" / "seeds"
MOCK = ROOT / "target" / "release" / "mock-llm"
PATHS = {"chat": "/v1/chat/completions", "responses": "/v1/responses", "messages": "/v1/messages"}
SEP = b"\n%%\n"
Q = "Is tea healthy?"
FUSION_FN = {"name": "fusion", "description": "Ask a panel of models",
             "parameters": {"type": "object", "properties": {"question": {"type": "string"}}}}


def varint(n: int) -> bytes:
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def ld(field: int, data: bytes) -> bytes:
    return varint(field << 3 | 2) + varint(len(data)) + data


def pb_value(v) -> bytes:
    """A JSON value as a protobuf google.protobuf.Value."""
    if v is None:
        return varint(1 << 3) + varint(0)
    if isinstance(v, bool):
        return varint(4 << 3) + varint(int(v))
    if isinstance(v, (int, float)):
        return varint(2 << 3 | 1) + struct.pack("<d", float(v))
    if isinstance(v, str):
        return ld(3, v.encode())
    if isinstance(v, dict):
        return ld(5, pb_struct(v))
    return ld(6, b"".join(ld(1, pb_value(x)) for x in v))


def pb_struct(d: dict) -> bytes:
    """A JSON object as a binary google.protobuf.Struct (Envoy's native YAML configuration)."""
    return b"".join(ld(1, ld(1, k.encode()) + ld(2, pb_value(v))) for k, v in d.items())


def write(target: str, data: bytes) -> None:
    d = SEEDS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / hashlib.sha1(data).hexdigest()[:16]).write_bytes(data)


def user(api: str, text: str) -> dict:
    if api == "messages":
        return {"role": "user", "content": [{"type": "text", "text": text}]}
    return {"role": "user", "content": text}


def provider_request(api: str, model: str, system: str | None, text: str, *, tools: bool = False,
                     tool_result: str | None = None, stream: bool = False) -> dict:
    """A provider call as the engine would build it (enough for the mock to answer alike)."""
    body: dict = {"model": model, "stream": stream}
    if api == "chat":
        msgs = ([{"role": "system", "content": system}] if system else []) + [user(api, text)]
        if tool_result is not None:
            msgs += [{"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "fusion", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": tool_result}]
        body["messages"] = msgs
        if tools:
            body["tools"] = [{"type": "function", "function": FUSION_FN}]
    elif api == "responses":
        if system:
            body["instructions"] = system
        items = [user(api, text)]
        if tool_result is not None:
            items += [{"type": "function_call", "call_id": "call_1", "name": "fusion", "arguments": "{}"},
                      {"type": "function_call_output", "call_id": "call_1", "output": tool_result}]
        body["input"] = items
        if tools:
            body["tools"] = [{"type": "function", **FUSION_FN}]
    else:
        body["max_tokens"] = 512
        if system:
            body["system"] = system
        msgs = [user(api, text)]
        if tool_result is not None:
            msgs += [{"role": "assistant", "content": [{"type": "tool_use", "id": "call_1", "name": "fusion", "input": {}}]},
                     {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_1", "content": tool_result}]}]
        body["messages"] = msgs
        if tools:
            body["tools"] = [{"name": "fusion", "description": FUSION_FN["description"],
                              "input_schema": FUSION_FN["parameters"]}]
    return body


JUDGE_SYSTEM = "Compare the responses. Reply with JSON keys consensus, contradictions, partial_coverage, unique_insights, blind_spots."
JUDGE_TEXT = "## Responses\n\n### Response 1\n\nYes.\n\n### Response 2\n\nMostly.\n"
RESULT = json.dumps({"status": "ok", "analysis": {"consensus": ["yes"]}, "responses": [], "failed_models": []})


def client_requests() -> dict[str, list[dict]]:
    decl = {"type": "fusion", "panel": [{"model": "mock-a"}, {"model": "mock-b"}], "judge": {"model": "mock-judge"}}
    orf = {"type": "openrouter:fusion", "parameters": {"analysis_models": ["mock-x"], "model": "mock-j"}}
    weather = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
    return {
        "chat": [
            {"model": "fusion", "messages": [{"role": "system", "content": "Be terse."}, user("chat", Q)]},
            {"model": "fusion", "stream": True, "stream_options": {"include_usage": True}, "messages": [user("chat", Q)]},
            {"model": "mock-outer", "messages": [user("chat", Q)], "tools": [decl, weather], "tool_choice": "auto",
             "temperature": 0.2, "max_tokens": 100, "top_p": 0.9, "stop": ["\n"]},
            {"model": "mock-outer", "messages": [user("chat", Q)], "tools": [orf],
             "tool_choice": {"type": "function", "function": {"name": "fusion"}}},
            {"model": "fusion", "messages": [user("chat", Q), {"role": "assistant", "content": None, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"x\"}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "sunny"}]},
            {"model": "fusion", "fusion": {"analysis_models": ["mock-a", "mock-b"], "synthesis_model": "mock-s"},
             "messages": [user("chat", [{"type": "text", "text": Q}])]},
        ],
        "responses": [
            {"model": "fusion", "input": Q},
            {"model": "fusion", "stream": True, "instructions": "Be terse.", "input": [user("responses", Q)]},
            {"model": "mock-outer", "input": [{"role": "user", "content": [{"type": "input_text", "text": Q}]}],
             "tools": [decl, {"type": "function", "name": "get_weather", "parameters": {"type": "object"}}],
             "tool_choice": "required", "max_output_tokens": 100},
            {"model": "mock-outer", "input": Q, "tools": [orf], "tool_choice": {"type": "function", "name": "fusion"}},
        ],
        "messages": [
            {"model": "fusion", "max_tokens": 100, "messages": [user("messages", Q)]},
            {"model": "fusion", "max_tokens": 100, "stream": True, "system": [{"type": "text", "text": "Be terse."}],
             "messages": [{"role": "user", "content": Q}]},
            {"model": "mock-outer", "max_tokens": 100, "messages": [user("messages", Q)],
             "tools": [decl, {"name": "get_weather", "input_schema": {"type": "object"}}],
             "tool_choice": {"type": "tool", "name": "fusion"}},
            {"model": "mock-outer", "max_tokens": 100, "messages": [user("messages", Q)], "tools": [orf],
             "tool_choice": {"type": "any"}},
        ],
    }


def main() -> None:
    proc = subprocess.Popen([str(MOCK), "--port", "0", "--exit-after", "120"], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        m = re.search(r":(\d+)", line)
        if not m:
            sys.exit(f"mock did not start: {line!r}")
        url = f"http://127.0.0.1:{m.group(1)}"

        def answer(api: str, body: dict) -> bytes:
            return httpx.post(url + PATHS[api], json=body, timeout=10).content

        # provider_response: every API's answers, JSON and SSE, for each role.
        per_api: dict[str, dict[str, bytes]] = {}
        for api in PATHS:
            roles = {
                "member": provider_request(api, "mock-a", None, Q),
                "judge": provider_request(api, "mock-judge", JUDGE_SYSTEM, JUDGE_TEXT),
                "tool_call": provider_request(api, "mock-outer", None, Q, tools=True),
                "final": provider_request(api, "mock-outer", None, Q, tools=True, tool_result=RESULT),
            }
            per_api[api] = {}
            for role, body in roles.items():
                for stream in (False, True):
                    data = answer(api, {**body, "stream": stream})
                    per_api[api][role + ("_sse" if stream else "")] = data
                    write("provider_response", data)
            write("provider_response", answer(api, provider_request(api, "mock-a:status=429", None, Q)))
            write("provider_response", answer(api, provider_request(api, "mock-a:malformed", None, Q, stream=True)))
            write("sse_relay", bytes([list(PATHS).index(api), 7]) + per_api[api]["final_sse"])
        write("sse_relay", bytes([0, 3]) + b"data: {\"usage\":{\"prompt_tokens\":1}}\r\n\r\n: comment\n\ndata: [DONE]\n\n")

        # judge_analysis: what judges say.
        for directive in ("", ":fenced", ":prose"):
            body = provider_request("chat", "mock-judge" + directive, JUDGE_SYSTEM, JUDGE_TEXT)
            text = json.loads(answer("chat", body))["choices"][0]["message"]["content"]
            write("judge_analysis", text.encode())
        write("judge_analysis", b'{"consensus": "one", "blind_spots": null}')
        write("judge_analysis", b'Sure! {"contradictions": [1, {"a": 2}]} and {"x": 1}')

        # client_request and engine_turn.
        for api, bodies in client_requests().items():
            sel = list(PATHS).index(api)
            for body in bodies:
                raw = json.dumps(body).encode()
                write("client_request", raw)
                stream = bool(body.get("stream"))
                auto = body.get("model") == "mock-outer" and body.get("tool_choice") in (None, "auto")
                a = per_api["chat"]
                results = [b"200 5 0\n" + a["member"]] * 3 + [b"200 5 0\n" + a["judge"], b"200 5 0\n" + a["final"]]
                if auto:
                    results = [b"200 5 0\n" + a["tool_call"]] + results
                if stream:
                    results.append(b"200 0 0\n" + per_api[api]["final_sse"])
                write("engine_turn", bytes([sel]) + raw + SEP + SEP.join(results))
                # Failures: a reset member, a 429, a prose judge, a timeout past the budget.
                bad = [b"x\n", b"429 1 1\n" + a["member"], b"504 30000 0\n", b"200 1 0\nThe answers agree."]
                write("engine_turn", bytes([sel]) + raw + SEP + SEP.join(bad + results[-1:]))
                # The mixed configuration: each member answers in its own provider API.
                mixed = [b"200 5 0\n" + per_api[p]["member"] for p in ("chat", "responses", "messages")]
                mixed += [b"200 5 0\n" + per_api["responses"]["judge"], b"200 5 0\n" + per_api["chat"]["final"]]
                write("engine_turn", bytes([sel + 3]) + raw + SEP + SEP.join(mixed))

        # filter_config: the shipped demo configuration and variants.
        demo = (ROOT / "envoy" / "demo.yaml").read_text()
        start = demo.index("value: |") + len("value: |")
        block = demo[start:].split("\n          - name: envoy.filters.http.router")[0]
        config = json.loads(block)
        write("filter_config", json.dumps(config).encode())
        write("filter_config", b"")
        fuzz_dir = ROOT / "fuzz" / "src" / "lib.rs"
        mixed = fuzz_dir.read_text().split('MIXED_CONFIG: &str = r#"')[1].split('"#;')[0]
        write("filter_config", mixed.encode())
        keyed = dict(config, upstreams={
            "openai": {"cluster": "openai", "authority": "api.openai.com", "api": "chat",
                       "auth": {"type": "bearer", "env": "OPENAI_API_KEY"}},
            "anthropic": {"cluster": "anthropic", "api": "messages", "path": "/v1/messages",
                          "auth": {"type": "header", "name": "x-api-key", "env": "ANTHROPIC_API_KEY"}},
            "fwd": {"cluster": "fwd", "api": "responses", "auth": {"type": "forward"}}},
            routes=[{"models": ["gpt-4o"], "upstream": "openai"},
                    {"prefix": "anthropic/", "strip_prefix": True, "upstream": "anthropic"},
                    {"prefix": "", "upstream": "fwd"}])
        write("filter_config", json.dumps(keyed).encode())
        write("filter_config", pb_struct(config))
        write("filter_config", pb_struct(json.loads(mixed)))
    finally:
        proc.kill()
        proc.wait()
    for d in sorted(SEEDS.iterdir()):
        print(f"{d.name}: {len(list(d.iterdir()))} seeds")


if __name__ == "__main__":
    main()
