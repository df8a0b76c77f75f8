"""Issue: hardening. Bad client input through the real Envoy, on all three APIs: every
case gets a 4xx in the client API's native error shape when it is the filter's to
judge (it asks for fusion), or passes through to the upstream untouched when it is
not; the VM never crashes or hangs, and keeps serving afterwards.

Outcomes a case can expect:
- "refused": a 4xx in the API's own error shape, and no call reached any model;
- "passed": the upstream got the request byte for byte, once, and its answer came back;
- "too_large": Envoy's own 413, in the API's error shape (the body is past the connection
  buffer limit that the filter's buffering runs into), no call reached any model;
- "served": fusion ran (the wrong thing in the request is harmless to it);
- "plain": no fusion, the outer model answered directly (the depth rule);
- "provider_refused": fusion ran, and the answering model's provider refused what the
  client sent: a 400 in the API's own error shape naming the model and the reason.
Cases marked xfail are gaps the filter still has (listed for the lead)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

import httpx
import pytest

PATHS = {"chat": "/v1/chat/completions", "responses": "/v1/responses", "messages": "/v1/messages"}
APIS = list(PATHS)
# A request slower than this is a hang: every case here is answered in milliseconds.
HANG_S = 20
STATS = {"cases": 0, "crashes": 0, "hangs": 0}
VM_FAILURE = re.compile(r"panicked|wasm trap|Wasm VM failed|Function: proxy_on_\w+ failed|unreachable executed")


@dataclass
class Case:
    name: str
    api: str
    body: bytes
    expect: str
    headers: dict = field(default_factory=dict)
    needle: str | None = None  # in the error message
    gap: str | None = None  # why it is xfail today
    method: str = "POST"
    path_suffix: str = ""


def valid(api: str, model: str = "fusion") -> dict:
    if api == "chat":
        return {"model": model, "messages": [{"role": "user", "content": "Is tea healthy?"}]}
    if api == "responses":
        return {"model": model, "input": "Is tea healthy?"}
    return {"model": model, "max_tokens": 100, "messages": [{"role": "user", "content": "Is tea healthy?"}]}


def enc(body: object) -> bytes:
    return body if isinstance(body, bytes) else json.dumps(body).encode()


def with_(api: str, model: str = "fusion", drop: tuple = (), **fields) -> bytes:
    body = valid(api, model)
    for k in drop:
        body.pop(k, None)
    body.update(fields)
    return enc(body)


def declared(api: str, *decls, model: object = "mock-outer", **fields) -> bytes:
    return with_(api, model, tools=list(decls), **fields)


def conv_field(api: str) -> str:
    return "input" if api == "responses" else "messages"


def max_tokens_field(api: str) -> str:
    return {"chat": "max_tokens", "responses": "max_output_tokens", "messages": "max_tokens"}[api]


def tool_choice_string_spelling(api: str) -> object:
    # Messages has no string spelling: its tool_choice is always an object.
    return "auto" if api != "messages" else {"type": "any"}


def cases() -> list[Case]:
    out: list[Case] = []
    for api in APIS:
        conv = conv_field(api)
        c = lambda name, body, expect, **kw: out.append(Case(name, api, body, expect, **kw))  # noqa: E731

        # Not JSON, or not a JSON object: not the filter's to judge unless it is an object.
        c("malformed-json", b'{"model": "fusion", "messages": [', "passed")
        c("trailing-garbage", enc(valid(api)) + b" }{", "passed")
        c("empty-object-with-fusion-key", b'{"fusion": true}', "passed")
        # An array is not a request (serde would read it into a struct field by field).
        c("array-body", b'["fusion"]', "passed")
        c("string-body", b'"fusion"', "passed")
        c("bare-word", b"fusion", "passed")
        c("empty-body", b"", "passed")
        # Parsers disagree on duplicate keys; the filter reads the last (as serde_json and
        # Python do), so this asks for fusion, on an empty conversation: refused.
        c("duplicate-model-keys", b'{"model": "gpt-x", "model": "fusion", "messages": []}', "refused")
        # Invalid text.
        c("invalid-utf8-in-string", enc(valid(api)).replace(b"Is tea", b"\xff\xfe\x80 tea"), "passed")
        c("lone-surrogate-escape", enc(valid(api)).replace(b"Is tea", b"\\ud800 tea"), "passed")
        c("utf8-bom", b"\xef\xbb\xbf" + enc(valid(api)), "passed")
        c("nul-bytes", enc(valid(api)).replace(b"Is tea", b"Is\x00tea"), "passed")
        # Deeply nested: past serde_json's recursion limit, the upstream judges it.
        c("nested-arrays-100k", b'{"model": "fusion", "messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "passed")
        c("nested-objects-100k", b'{"model": "fusion", "x": ' + b'{"a":' * 100_000 + b"1" + b"}" * 100_000 + b"}", "passed")
        c("nested-in-content-100", enc(valid(api)).replace(b'"Is tea healthy?"', b"[" * 100 + b"]" * 100), "refused")
        # Big: within the demo's 32 MiB buffer limit (and the filter's max_request_bytes), served.
        c("big-fusion-2MiB", with_(api, **{conv: [{"role": "user", "content": "x" * (2 << 20)}]}), "served")
        c("big-plain-2MiB", with_(api, "gpt-plain", **{conv: [{"role": "user", "content": "x" * (2 << 20)}]}),
          "passed")
        # Huge: past the 32 MiB buffer limit, fusion or not (the filter buffers LLM POSTs).
        c("huge-fusion-33MiB", with_(api, **{conv: [{"role": "user", "content": "x" * (33 << 20)}]}), "too_large")
        c("huge-plain-33MiB", with_(api, "gpt-plain", **{conv: [{"role": "user", "content": "x" * (33 << 20)}]}),
          "too_large")

        # Wrong types in every field the filter reads (alias request).
        c("conversation-not-array", with_(api, **{conv: 5}), "refused", needle=conv)
        c("conversation-missing", with_(api, drop=(conv,)), "refused", needle=conv)
        c("conversation-item-not-object", with_(api, **{conv: [5]}), "refused", needle=conv)
        c("role-not-string", with_(api, **{conv: [{"role": 5, "content": "hi"}]}), "refused")
        c("content-not-text", with_(api, **{conv: [{"role": "user", "content": 5}]}), "refused")
        c("content-parts-not-objects", with_(api, **{conv: [{"role": "user", "content": [5]}]}), "refused")
        c("conversation-empty", with_(api, **{conv: []}), "refused")
        c("model-number-with-declaration", declared(api, {"type": "fusion"}, model=5), "refused")
        c("model-null", with_(api, model=None), "passed")  # names no alias: not fusion
        c("tools-not-array", with_(api, tools="fusion"), "refused")
        c("tools-entry-not-object", with_(api, tools=[5]), "refused")
        c("tool-choice-number", with_(api, tool_choice=5), "refused")
        c("tool-choice-unknown-string", with_(api, tool_choice="sometimes"), "refused")
        c("stream-string", with_(api, stream="yes"), "refused")
        c("max-tokens-string", with_(api, **{max_tokens_field(api): "many"}), "refused")
        c("temperature-string", with_(api, temperature="hot"), "refused")
        c("fusion-block-number", with_(api, fusion=5), "refused")
        c("fusion-block-models-not-list", with_(api, fusion={"analysis_models": 5}), "refused",
          needle="analysis_models")

        # The fusion declaration's own fields.
        c("panel-not-list", declared(api, {"type": "fusion", "panel": {"model": "mock-a"}}), "refused", needle="panel")
        c("panel-member-model-number", declared(api, {"type": "fusion", "panel": [{"model": 5}]}), "refused",
          needle="model")
        c("panel-member-not-object", declared(api, {"type": "fusion", "panel": [5]}), "refused")
        c("panel-member-tools-not-list", declared(api, {"type": "fusion", "panel": [{"model": "mock-a", "tools": 5}]}),
          "refused", needle="tools")
        c("panel-empty", declared(api, {"type": "fusion", "panel": []}), "refused", needle="empty")
        c("panel-9-members", declared(api, {"type": "fusion", "panel": [{"model": f"m{i}"} for i in range(9)]}),
          "refused", needle="at most 8")
        c("panel-10k-members", declared(api, {"type": "fusion", "panel": [{"model": f"m{i}"} for i in range(10_000)]}),
          "refused", needle="at most 8")
        c("judge-not-object", declared(api, {"type": "fusion", "judge": "mock-j"}), "refused", needle="judge")
        c("judge-model-number", declared(api, {"type": "fusion", "judge": {"model": 5}}), "refused", needle="judge")
        c("synthesizer-number", declared(api, {"type": "fusion", "synthesizer": 5}), "refused", needle="synthesizer")
        c("openrouter-parameters-not-object", declared(api, {"type": "openrouter:fusion", "parameters": []}),
          "refused")
        c("openrouter-models-not-list", declared(api, {"type": "openrouter:fusion",
                                                       "parameters": {"analysis_models": "mock-a"}}),
          "refused", needle="analysis_models")
        c("openrouter-judge-number", declared(api, {"type": "openrouter:fusion", "parameters": {"model": 5}}),
          "refused", needle="judge")
        c("duplicate-declarations", declared(api, {"type": "fusion"}, {"type": "fusion"}), "refused",
          needle="at most once")
        c("duplicate-declarations-both-spellings", declared(api, {"type": "fusion"}, {"type": "openrouter:fusion"}),
          "refused", needle="at most once")
        c("long-panel-model-name", declared(api, {"type": "fusion", "panel": [{"model": "x" * 10_000}]},
                                            tool_choice=tool_choice_string_spelling(api)), "served")
        # Unknown tool types next to the alias are the provider's business: fusion runs,
        # and the answering model's call carries them (a patch of the client's body).
        # A Chat Completions provider refuses them, and the client hears it in a 400.
        c("unknown-tool-type", with_(api, tools=[{"type": "bogus_tool"}]),
          "provider_refused" if api == "chat" else "served")
        c("declaration-unknown-field", declared(api, {"type": "fusion", "bogus": 1},
                                                tool_choice=tool_choice_string_spelling(api)), "served")

        # Content types, methods and paths that are not the filter's.
        c("content-type-text-plain", enc(valid(api)), "passed", headers={"content-type": "text/plain"})
        c("content-type-form", enc(valid(api)), "passed",
          headers={"content-type": "application/x-www-form-urlencoded"})
        c("content-type-multipart", enc(valid(api)), "passed", headers={"content-type": "multipart/form-data; b=x"})
        c("content-type-json-mixed-case", enc(valid(api)), "served",
          headers={"content-type": "Application/JSON; charset=utf-8"})
        c("method-put", enc(valid(api)), "passed", method="PUT")
        c("path-trailing-slash", enc(valid(api)), "passed", path_suffix="/")
        c("path-query-string", enc(valid(api)), "served", path_suffix="?beta=true")
        # Headers the filter reads.
        c("depth-header-garbage", enc(valid(api)), "plain", headers={"x-fusion-depth": "not-a-number"})
        c("depth-header-negative", enc(valid(api)), "plain", headers={"x-fusion-depth": "-1"})
        c("depth-header-huge", enc(valid(api)), "plain", headers={"x-fusion-depth": "99999999999999999999"})
    return out


CASES = cases()


def native_error(api: str, r: httpx.Response) -> dict:
    body = r.json()
    if api == "messages":
        assert body["type"] == "error", body
        err = body["error"]
        assert set(err) == {"type", "message"} and isinstance(err["message"], str), body
        assert err["type"] in {"invalid_request_error", "request_too_large", "rate_limit_error"}, body
    else:
        err = body["error"]
        assert set(err) == {"message", "type", "param", "code"}, body
        assert err["type"] == "invalid_request_error" and isinstance(err["message"], str), body
    return err


def send(envoy, case: Case) -> httpx.Response:
    headers = {"content-type": "application/json", **case.headers}
    STATS["cases"] += 1
    try:
        r = httpx.request(case.method, envoy.url + PATHS[case.api] + case.path_suffix, content=case.body,
                          headers=headers, timeout=HANG_S)
    except httpx.TimeoutException:
        STATS["hangs"] += 1
        raise
    except httpx.TransportError:
        STATS["crashes"] += 1
        raise
    if r.status_code >= 500 or (r.status_code == 503 and "upstream" in r.text):
        STATS["crashes"] += 1
    return r


def params():
    for case in CASES:
        # A gap fails one of the test's assertions; anything else (a crash, a
        # filter Envoy could not load) is not the known gap and must fail the run.
        marks = [pytest.mark.xfail(strict=True, raises=AssertionError, reason=case.gap)] if case.gap else []
        yield pytest.param(case, id=f"{case.api}-{case.name}", marks=marks)


@pytest.mark.parametrize("case", list(params()))
def test_bad_input(envoy, mock, case: Case):
    r = send(envoy, case)
    assert r.status_code < 500, (r.status_code, r.text[:300])
    calls = mock.calls()
    if case.expect == "refused":
        assert 400 <= r.status_code < 500, (r.status_code, r.text[:300])
        err = native_error(case.api, r)
        if case.needle:
            assert case.needle in err["message"], err
        assert calls == [], "a refused request reached a model"
    elif case.expect == "too_large":
        assert r.status_code == 413, r.text[:300]
        native_error(case.api, r)
        assert calls == []
    elif case.expect == "passed":
        assert len(calls) == 1, [c["model"] for c in calls]
        [call] = calls
        assert call["method"] == case.method and call["path"] == PATHS[case.api] + case.path_suffix
        # Untouched: same length, same bytes where the mock could read them.
        assert int(call["headers"].get("content-length", "0")) == len(case.body)
        assert "x-fusion-depth" not in call["headers"]
        try:
            sent = json.loads(case.body)
        except (ValueError, RecursionError):
            sent = None
        if sent is not None and not isinstance(call["body"], str):
            assert call["body"] == sent
        assert "fusion" not in (r.json() if r.headers.get("content-type", "").startswith("application/json") else {})
    elif case.expect == "served":
        assert r.status_code == 200, r.text[:300]
        assert "fusion" in r.json(), r.text[:300]
        assert any(c["model"] == "mock-judge" for c in calls) or r.json()["fusion"]["panel"], r.text[:300]
    elif case.expect == "provider_refused":
        assert r.status_code == 400, r.text[:300]
        assert "mock-outer" in native_error(case.api, r)["message"], r.text[:300]
    elif case.expect == "plain":
        assert r.status_code == 200, r.text[:300]
        assert [c["model"] for c in calls] == ["mock-outer"]
        assert "fusion" not in r.json()
    else:
        raise AssertionError(case.expect)


def test_vm_alive_after_bad_input(envoy, mock, capsys):
    """Sends every bad body of the table itself, then: the same Envoy still serves
    fusion, and its log has no VM failure."""
    crashes, hangs = [], []
    for case in CASES:
        try:
            r = httpx.request(case.method, envoy.url + PATHS[case.api] + case.path_suffix, content=case.body,
                              headers={"content-type": "application/json", **case.headers}, timeout=HANG_S)
        except httpx.TimeoutException:
            hangs.append(f"{case.api}-{case.name}")
            continue
        except httpx.TransportError:
            crashes.append(f"{case.api}-{case.name}")
            continue
        if r.status_code >= 500:
            crashes.append(f"{case.api}-{case.name}: {r.status_code}")
    for api in APIS:
        mock.reset()
        r = envoy.post(PATHS[api], valid(api))
        assert r.status_code == 200, r.text[:300]
        assert r.json()["fusion"]["analysis"] is True
    failures = [line for line in envoy.log_text().splitlines() if VM_FAILURE.search(line)]
    with capsys.disabled():
        print(f"\nbad input: {len(CASES)} cases, crashes {len(crashes)}, hangs {len(hangs)}")
    assert len(CASES) > 50
    assert failures == [], failures[:5]
    assert crashes == [] and hangs == [], (crashes, hangs)
