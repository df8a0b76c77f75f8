"""Issue 13: zero-loss requests. Every model sees what the client sent, and every call
the filter makes is one a real provider accepts (the strict mock refuses the rest, with
the provider's own 400, and logs it `rejected`). One mock behind three upstreams, one
per provider API; what each model received is read from the mock's call log."""

from __future__ import annotations

import base64
import copy
import json

import pytest

from harness import ContentLost, Envoy, MockRejected, assert_no_rejections, demo_fusion_config

APIS = ("chat", "responses", "messages")
PATHS = {"chat": "/v1/chat/completions", "responses": "/v1/responses", "messages": "/v1/messages"}
QUESTION = "What is in this image and this document?"
PNG_B64 = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")
PDF_B64 = base64.b64encode(
    b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages/Kids[]/Count 0>>endobj\n"
    b"trailer<</Root 1 0 R>>\n%%EOF\n").decode()
MEDIA = {("image", PNG_B64), ("pdf", PDF_B64)}


@pytest.fixture(scope="module")
def mixed(mock):
    """Three upstreams, one per provider API, chosen by model prefix (stripped):
    `chat/x` reaches the mock as model `x` on Chat Completions, and so on."""
    config = demo_fusion_config()
    config["upstreams"] = {api: {"cluster": "mock", "api": api} for api in APIS}
    config["routes"] = [{"prefix": f"{api}/", "strip_prefix": True, "upstream": api} for api in APIS]
    config["outer_model"] = "chat/outer"
    config["panel"] = [{"model": "chat/p1"}, {"model": "responses/p2"}, {"model": "messages/p3"}]
    config["judge"] = {"model": "responses/judge"}
    config["presets"] = {}
    config["prices"] = {}
    e = Envoy(mock, name="zero-loss", fusion_config=config)
    yield e
    e.stop()


# --- request builders, in each client API's spelling ---------------------------------------

def media_parts(api: str) -> list:
    if api == "chat":
        return [{"type": "text", "text": QUESTION},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}},
                {"type": "file", "file": {"filename": "doc.pdf", "file_data": f"data:application/pdf;base64,{PDF_B64}"}}]
    if api == "responses":
        return [{"type": "input_text", "text": QUESTION},
                {"type": "input_image", "image_url": f"data:image/png;base64,{PNG_B64}"},
                {"type": "input_file", "filename": "doc.pdf", "file_data": f"data:application/pdf;base64,{PDF_B64}"}]
    return [{"type": "text", "text": QUESTION},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64}},
            {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": PDF_B64}}]


def request(api: str, model: str, turns: list, tools: list | None = None, **extra) -> dict:
    """turns: [(role, content)]; content is a string or a list of parts in the API's spelling."""
    key = "input" if api == "responses" else "messages"
    body = {"model": model, key: [{"role": r, "content": c} for r, c in turns]}
    if api == "messages":
        body["max_tokens"] = 1024
    if tools:
        body["tools"] = tools
    body.update(extra)
    return body


def answer_text(api: str, body: dict) -> str:
    if api == "chat":
        return body["choices"][0]["message"].get("content") or ""
    if api == "responses":
        return "".join(p.get("text", "") for item in body["output"] if item.get("type") == "message"
                       for p in item["content"])
    return "".join(b.get("text", "") for b in body["content"] if b.get("type") == "text")


# --- what a model received -----------------------------------------------------------------

def _data(url: str) -> str:
    return url.split(";base64,", 1)[-1] if url else ""


def media_seen(api: str, body: dict) -> set:
    """(kind, base64 payload) of every image and PDF in a provider request's conversation."""
    found = set()

    def walk(v):
        if isinstance(v, dict):
            t = v.get("type")
            if api == "chat" and t == "image_url":
                found.add(("image", _data(v.get("image_url", {}).get("url", ""))))
            elif api == "chat" and t == "file":
                found.add(("pdf", _data(v.get("file", {}).get("file_data", ""))))
            elif api == "responses" and t == "input_image":
                found.add(("image", _data(v.get("image_url", ""))))
            elif api == "responses" and t == "input_file":
                found.add(("pdf", _data(v.get("file_data", ""))))
            elif api == "messages" and t == "image":
                found.add(("image", v.get("source", {}).get("data")))
            elif api == "messages" and t == "document":
                found.add(("pdf", v.get("source", {}).get("data")))
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)

    walk(body.get("messages") or body.get("input"))
    return found


def user_parts(api: str, body: dict) -> list | None:
    """The content of the provider request's user message that asks QUESTION."""
    for m in body.get("messages") or body.get("input") or []:
        if isinstance(m, dict) and m.get("role") == "user" and QUESTION in json.dumps(m.get("content")):
            return m["content"]
    return None


def calls_of(mock, model: str) -> list:
    return [c for c in mock.calls() if c["model"] == model]


# --- an image and a PDF reach every panel member and the final call -------------------------

@pytest.mark.parametrize("provider", APIS)
@pytest.mark.parametrize("client", APIS)
def test_image_and_pdf_reach_every_model(mixed, mock, client, provider):
    decl = {"type": "fusion", "panel": [{"model": f"{provider}/p1"}, {"model": f"{provider}/p2"}],
            "judge": {"model": f"{provider}/judge"}}
    r = mixed.post(PATHS[client], request(client, f"{provider}/outer", [("user", media_parts(client))], [decl]))
    assert r.status_code == 200, r.text[:500]
    final = calls_of(mock, "outer")[-1]
    for call in calls_of(mock, "p1") + calls_of(mock, "p2") + [final]:
        seen = media_seen(provider, call["body"])
        if not MEDIA <= seen:
            raise ContentLost(f"{call['model']} ({provider}) got {sorted(k for k, _ in seen)} "
                              f"of the client's image and PDF")
        if client == provider and user_parts(provider, call["body"]) != media_parts(client):
            raise ContentLost(f"{call['model']}: the user message is not the client's, byte for byte: "
                              f"{json.dumps(user_parts(provider, call['body']))[:500]}")
    assert_no_rejections(mock)
    assert answer_text(client, r.json()).startswith("outer final answer.")


# --- a multi-turn conversation with thinking, cache_control and tool calls survives ---------

def history(api: str) -> tuple[list, list]:
    """A conversation with a client tool call and (Messages) thinking and cache_control,
    in the API's spelling, and the client tools it needs."""
    if api == "chat":
        tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
        msgs = [{"role": "system", "content": "You are terse."},
                {"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": None, "tool_calls": [{"id": "call_w1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
                {"role": "tool", "tool_call_id": "call_w1", "content": "18 C, sunny"},
                {"role": "assistant", "content": "18 C and sunny."},
                {"role": "user", "content": "Should I bring a coat?"}]
        return msgs, tools
    if api == "responses":
        tools = [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}]
        items = [{"role": "developer", "content": "You are terse."},
                 {"role": "user", "content": "Weather in Paris?"},
                 {"type": "function_call", "call_id": "call_w1", "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"},
                 {"type": "function_call_output", "call_id": "call_w1", "output": "18 C, sunny"},
                 {"role": "assistant", "content": [{"type": "output_text", "text": "18 C and sunny."}]},
                 {"role": "user", "content": "Should I bring a coat?"}]
        return items, tools
    tools = [{"name": "get_weather", "input_schema": {"type": "object"}}]
    msgs = [{"role": "user", "content": [{"type": "text", "text": "Weather in Paris?", "cache_control": {"type": "ephemeral"}}]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "The user wants the weather.", "signature": "c2lnLTE="},
                {"type": "tool_use", "id": "toolu_w1", "name": "get_weather", "input": {"city": "Paris"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_w1", "content": "18 C, sunny"}]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "Answer briefly.", "signature": "c2lnLTI="},
                {"type": "text", "text": "18 C and sunny."}]},
            {"role": "user", "content": "Should I bring a coat?"}]
    return msgs, tools


@pytest.mark.parametrize("api", APIS)
def test_multi_turn_history_survives(mixed, mock, api):
    turns, tools = history(api)
    key = "input" if api == "responses" else "messages"
    body = {"model": f"{api}/outer", key: turns, "tools": tools + [{"type": "fusion", "panel": [{"model": f"{api}/p1"}]}]}
    if api == "messages":
        body.update(max_tokens=4096, thinking={"type": "enabled", "budget_tokens": 1024})
    r = mixed.post(PATHS[api], body)
    assert r.status_code == 200, r.text[:500]
    final = calls_of(mock, "outer")[-1]["body"]
    sent = final[key]
    # The client's conversation is the prefix of the final call, byte for byte.
    if sent[:len(turns)] != turns:
        raise ContentLost(f"the final call's history differs from the client's: {json.dumps(sent)[:1500]}")
    member = calls_of(mock, "p1")[-1]["body"]
    if "18 C, sunny" not in json.dumps(member):
        raise ContentLost("the panel member did not see the tool result of the history")
    assert_no_rejections(mock)


# --- a conversation that continues after a fusion answer ------------------------------------

def continue_request(api: str, first: dict, model: str) -> dict:
    """The next turn as an SDK sends it: the fusion answer as it came back, then a question."""
    q1, q2 = "Why is the sky blue?", "And why are sunsets red?"
    if api == "chat":
        msg = {k: v for k, v in first["choices"][0]["message"].items() if v is not None}
        return {"model": model, "messages": [{"role": "user", "content": q1}, msg, {"role": "user", "content": q2}]}
    if api == "responses":
        # store=false clients (Codex, the AI SDK with store off) replay every output item.
        return {"model": model, "store": False,
                "input": [{"role": "user", "content": q1}, *first["output"], {"role": "user", "content": q2}]}
    return {"model": model, "max_tokens": 1024, "messages": [
        {"role": "user", "content": q1}, {"role": "assistant", "content": first["content"]},
        {"role": "user", "content": q2}]}


def first_request(api: str) -> dict:
    return request(api, "fusion", [("user", "Why is the sky blue?")])


@pytest.mark.parametrize("api,next_model", [
    ("chat", "fusion"),
    ("chat", "plain"),
    ("responses", "fusion"),
    ("responses", "plain"),
    ("messages", "fusion"),
    ("messages", "plain"),
])
def test_conversation_continues_after_a_fusion_answer(mixed, mock, api, next_model):
    first = mixed.post(PATHS[api], first_request(api))
    assert first.status_code == 200, first.text[:500]
    model = "fusion" if next_model == "fusion" else f"{api}/plain"
    mock.reset()
    r = mixed.post(PATHS[api], continue_request(api, first.json(), model))
    assert_no_rejections(mock)
    assert r.status_code == 200, r.text[:500]
    seen = mock.calls()[0]
    if "outer final answer." not in json.dumps(seen["body"]):
        raise ContentLost(f"{seen['model']} did not see the first answer: {json.dumps(seen['body'])[:800]}")


# --- refusals -------------------------------------------------------------------------------

def refusal_of(api: str, body: dict) -> str | None:
    """The refusal in the API's own field, if any."""
    if api == "chat":
        return body["choices"][0]["message"].get("refusal")
    if api == "responses":
        parts = [p for item in body["output"] if item.get("type") == "message" for p in item["content"]]
        return next((p["refusal"] for p in parts if p.get("type") == "refusal"), None)
    if body.get("stop_reason") == "refusal":
        return answer_text(api, body)
    return None


@pytest.mark.parametrize("api", APIS)
def test_answering_models_refusal_reaches_the_client(mixed, mock, api):
    mock.script({"outer": "refuse"})
    r = mixed.post(PATHS[api], first_request(api))
    assert r.status_code == 200, r.text[:500]
    refusal = refusal_of(api, r.json())
    assert refusal and "can't help" in refusal, r.json()
    assert_no_rejections(mock)


def test_panel_members_refusal_reaches_the_judge(mixed, mock):
    mock.script({"p2": "refuse"})
    r = mixed.post(PATHS["chat"], first_request("chat"))
    assert r.status_code == 200, r.text[:500]
    panel = {m["model"]: m for m in r.json()["fusion"]["panel"]}
    assert panel["responses/p2"].get("failure_reason") != "empty_response", panel
    judge = calls_of(mock, "judge")[-1]
    assert "p2 refused" in json.dumps(judge["body"]), "the judge did not see the member's refusal"
    assert_no_rejections(mock)


# --- citations ------------------------------------------------------------------------------

def citations_of(api: str, body: dict) -> list:
    if api == "chat":
        return body["choices"][0]["message"].get("annotations") or []
    if api == "responses":
        return [a for item in body["output"] if item.get("type") == "message"
                for p in item["content"] for a in p.get("annotations", [])]
    return [c for b in body["content"] for c in b.get("citations") or []]


@pytest.mark.parametrize("api", APIS)
def test_citations_reach_the_client(mixed, mock, api):
    mock.script({"outer": "cite"})
    r = mixed.post(PATHS[api], first_request(api))
    assert r.status_code == 200, r.text[:500]
    urls = json.dumps(citations_of(api, r.json()))
    assert "https://example.com/outer/source" in urls, r.json()


# --- parameters current models accept --------------------------------------------------------

def test_judge_that_refuses_temperature_still_analyses(mixed, mock):
    mock.script({"judge": "reasoning_model"})
    r = mixed.post(PATHS["chat"], first_request("chat"))
    assert r.status_code == 200, r.text[:500]
    assert r.json()["fusion"]["analysis"] is True, r.json()["fusion"]


def test_metadata_goes_only_where_the_provider_accepts_it(mixed, mock):
    r = mixed.post(PATHS["responses"], request("responses", "fusion", [("user", "Hi")], metadata={"team": "a"}))
    assert_no_rejections(mock)
    assert r.status_code == 200, r.text[:500]


def test_anthropic_outer_model_with_thinking(mixed, mock):
    decl = {"type": "fusion", "panel": [{"model": "chat/p1"}]}
    body = request("chat", "messages/outer", [("user", "Why is the sky blue?")], [decl], reasoning_effort="low")
    r = mixed.post(PATHS["chat"], body)
    assert_no_rejections(mock)
    assert r.status_code == 200, r.text[:500]


@pytest.mark.parametrize("provider", [
    "chat",
    "messages",
])
def test_exhausted_credit_in_each_spelling(mixed, mock, provider):
    mock.script({"p1": "no_credits"})
    decl = {"type": "fusion", "panel": [{"model": f"{provider}/p1"}, {"model": f"{provider}/p2"}]}
    r = mixed.post(PATHS["chat"], request("chat", "chat/outer", [("user", "Hi")], [decl]))
    assert r.status_code == 200, r.text[:500]
    panel = {m["model"]: m for m in r.json()["fusion"]["panel"]}
    assert panel[f"{provider}/p1"]["failure_reason"] == "insufficient_credits", panel


# --- a part with no equivalent is a 400 naming it, never a silent drop ------------------------

def test_part_with_no_equivalent_is_a_400(mixed, mock):
    parts = [{"type": "text", "text": "Transcribe this."},
             {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}]
    decl = {"type": "fusion", "panel": [{"model": "messages/p1"}]}
    r = mixed.post(PATHS["chat"], request("chat", "chat/outer", [("user", parts)], [decl]))
    assert r.status_code == 400, r.text[:500]
    err = r.json()["error"]
    assert "input_audio" in err["message"] and "p1" in err["message"], err
    assert mock.calls() == [], "no model may be called"


# --- same-API calls are patches: fields the filter does not need reach the provider ---------

def test_same_api_final_call_keeps_the_clients_fields(mixed, mock):
    extra = {"response_format": {"type": "json_object"}, "seed": 7, "parallel_tool_calls": False,
             "some_future_field": {"x": 1}}
    decl = {"type": "fusion", "panel": [{"model": "chat/p1"}]}
    r = mixed.post(PATHS["chat"], request("chat", "chat/outer", [("user", "Reply in JSON.")], [decl], **extra))
    assert r.status_code == 200, r.text[:500]
    final = calls_of(mock, "outer")[-1]["body"]
    lost = {k: v for k, v in extra.items() if final.get(k) != v}
    if lost:
        raise ContentLost(f"the final call lost {sorted(lost)}")
    assert_no_rejections(mock)


# --- stateful references are forwarded or refused, never ignored ----------------------------

def test_unknown_previous_response_id_is_not_ignored(mixed, mock):
    body = request("responses", "fusion", [("user", "And then?")], previous_response_id="resp_unknown")
    r = mixed.post(PATHS["responses"], body)
    assert r.status_code == 400, r.text[:500]
    assert "previous_response_id" in r.json()["error"]["message"]


def test_item_reference_is_resolved_or_refused(mixed, mock):
    body = {"model": "fusion", "input": [{"role": "user", "content": "Why is the sky blue?"},
                                         {"type": "item_reference", "id": "msg_earlier_answer"},
                                         {"role": "user", "content": "And sunsets?"}]}
    r = mixed.post(PATHS["responses"], body)
    if r.status_code == 400:
        assert "store" in r.json()["error"]["message"], r.text[:500]
        assert mock.calls() == []
        return
    member = calls_of(mock, "p1")[-1]["body"]
    roles = [m.get("role") for m in member["messages"] if m.get("role") != "system"]
    if roles != ["user", "assistant", "user"]:
        raise ContentLost(f"the panel got roles {roles}: the referenced item was dropped")


# --- the SSE reader accepts comment lines and id:/retry: fields ------------------------------

def test_sse_answer_beginning_with_a_comment(mixed, mock):
    mock.script({"p1": "sse,sse_comment"})
    r = mixed.post(PATHS["chat"], first_request("chat"))
    assert r.status_code == 200, r.text[:500]
    panel = {m["model"]: m for m in r.json()["fusion"]["panel"]}
    assert panel["chat/p1"]["status"] == "ok", panel
