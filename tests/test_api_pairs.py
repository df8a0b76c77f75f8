"""Issue: every client API x every provider API. The panel receives the conversation
(system prompt and multi-turn history) faithfully, translated into the API its upstream speaks."""

import pytest

from harness import Envoy, demo_fusion_config

SYSTEM = "You are terse."
HISTORY = [("user", "What is 2+2?"), ("assistant", "4."), ("user", "And times 3?")]
PATHS = {"chat": "/v1/chat/completions", "responses": "/v1/responses", "messages": "/v1/messages"}


@pytest.fixture(scope="module")
def mixed(mock):
    """One mock behind three upstreams, one per provider API, chosen by model prefix."""
    config = demo_fusion_config()
    config["upstreams"] = {
        api: {"cluster": "mock", "api": api} for api in ("chat", "responses", "messages")
    }
    config["routes"] = [{"prefix": f"{api}/", "strip_prefix": True, "upstream": api}
                        for api in ("chat", "responses", "messages")]
    config["outer_model"] = "messages/outer"
    config["panel"] = [{"model": "chat/p1"}, {"model": "responses/p2"}, {"model": "messages/p3"}]
    config["judge"] = {"model": "responses/judge"}
    config["presets"] = {}
    config["prices"] = {}
    e = Envoy(mock, name="mixed", fusion_config=config)
    yield e
    e.stop()


def client_request(api, decl):
    if api == "chat":
        msgs = [{"role": "system", "content": SYSTEM}] + [{"role": r, "content": t} for r, t in HISTORY]
        return {"model": "fusion", "messages": msgs, "tools": [decl]}
    if api == "responses":
        return {"model": "fusion", "instructions": SYSTEM, "tools": [decl],
                "input": [{"role": r, "content": t} for r, t in HISTORY]}
    return {"model": "fusion", "max_tokens": 300, "system": SYSTEM, "tools": [decl],
            "messages": [{"role": r, "content": [{"type": "text", "text": t}]} for r, t in HISTORY]}


def provider_view(api, body):
    """(system, [(role, text)]) of a provider request as the mock received it."""
    def text(content):
        if isinstance(content, str):
            return content
        return "".join(p.get("text", "") for p in content)
    if api == "chat":
        msgs = body["messages"]
        system = [m["content"] for m in msgs if m["role"] == "system"]
        return system[0] if system else None, [(m["role"], text(m["content"])) for m in msgs if m["role"] != "system"]
    if api == "responses":
        return body.get("instructions"), [(m["role"], text(m["content"])) for m in body["input"]]
    return body.get("system"), [(m["role"], text(m["content"])) for m in body["messages"]]


@pytest.mark.parametrize("provider", ["chat", "responses", "messages"])
@pytest.mark.parametrize("client", ["chat", "responses", "messages"])
def test_panel_gets_the_conversation(mixed, mock, client, provider):
    decl = {"type": "fusion", "panel": [{"model": f"{provider}/member"}]}
    r = mixed.post(PATHS[client], client_request(client, decl))
    assert r.status_code == 200, r.text
    [member] = [c for c in mock.calls() if c["model"] == "member"]
    assert member["api"] == provider
    assert provider_view(provider, member["body"]) == (SYSTEM, HISTORY)
    assert member["headers"]["x-fusion-depth"] == "1"
    # The judge speaks Responses, the outer model Messages: the answer still reaches the client.
    outer = mock.calls()[-1]
    assert outer["api"] == "messages" and outer["model"] == "outer"
    body = r.json()
    text = {"chat": lambda b: b["choices"][0]["message"]["content"],
            "responses": lambda b: b["output"][-1]["content"][0]["text"],
            "messages": lambda b: b["content"][-1]["text"]}[client](body)
    assert text.startswith("outer final answer.")
    assert body["fusion"]["panel"][0]["status"] == "ok"
    assert body["fusion"]["analysis"] is True


def test_model_no_upstream_serves_is_a_400(mixed, mock):
    for decl in ({"type": "fusion", "panel": [{"model": "gpt-unrouted"}]},
                 {"type": "fusion", "judge": {"model": "nowhere/judge"}}):
        r = mixed.post(PATHS["messages"], client_request("messages", decl))
        assert r.status_code == 400, r.text
        err = r.json()
        assert err["type"] == "error" and err["error"]["type"] == "invalid_request_error"
        assert "is not served by any configured upstream" in err["error"]["message"]
    assert mock.calls() == []
