"""Issue: the server-tool loop. The model decides, budgets hold, the cap and the
depth rule hold, failures degrade. Through the real Envoy, Chat Completions client."""

import copy
import json

import pytest

from harness import Envoy, demo_fusion_config, self_cluster

CHAT = "/v1/chat/completions"
PANEL = ["mock-a", "mock-b", "mock-c"]
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


def request(model, tools=None, **extra):
    body = {"model": model, "messages": [{"role": "user", "content": "Is tea healthy?"}]}
    if tools is not None:
        body["tools"] = tools
    body.update(extra)
    return body


def models(mock):
    return [c["model"] for c in mock.calls("chat")]


def tool_names(call):
    return [t["function"]["name"] for t in call["body"].get("tools", [])]


def test_auto_mode_model_calls_fusion(envoy, mock):
    r = envoy.post(CHAT, request("mock-outer", tools=[{"type": "fusion"}]))
    assert r.status_code == 200, r.text
    body = r.json()
    seen = models(mock)
    assert seen[0] == "mock-outer" and seen[-1] == "mock-outer"
    assert sorted(seen[1:4]) == PANEL and seen[4] == "mock-judge"
    first, last = mock.calls("chat")[0], mock.calls("chat")[-1]
    # The client's declaration never reaches a model; fusion is offered as a function.
    assert tool_names(first) == ["fusion"]
    assert all(t["type"] == "function" for t in first["body"]["tools"])
    # The panel gets no tools at all.
    assert all("tools" not in c["body"] for c in mock.calls("chat")[1:4])
    # The decision round's tool call and the result are in the final round.
    msgs = last["body"]["messages"]
    assert msgs[-2]["tool_calls"][0]["function"]["name"] == "fusion"
    assert json.loads(msgs[-1]["content"])["status"] == "ok"
    assert body["fusion"]["mode"] == "auto"
    assert body["fusion"]["rounds"] == 2 and body["fusion"]["invocations"] == 1
    assert body["choices"][0]["message"]["content"].startswith("mock-outer final answer.")
    assert body["choices"][0]["finish_reason"] == "stop"


def test_auto_mode_model_answers_directly(envoy, mock):
    r = envoy.post(CHAT, request("mock-outer:nocall", tools=[{"type": "fusion"}]))
    assert r.status_code == 200, r.text
    body = r.json()
    assert models(mock) == ["mock-outer:nocall"], "no panel when the model does not call fusion"
    assert body["fusion"]["invocations"] == 0 and body["fusion"]["panel"] == []
    assert body["choices"][0]["message"]["content"].startswith("mock-outer answers")


def test_forcing_tool_choice_skips_the_decision_round(envoy, mock):
    for choice in ({"type": "function", "function": {"name": "fusion"}}, "required"):
        mock.reset()
        r = envoy.post(CHAT, request("mock-outer", tools=[{"type": "fusion"}], tool_choice=choice))
        assert r.status_code == 200, r.text
        seen = models(mock)
        assert sorted(seen[:3]) == PANEL, f"panel first for {choice}"
        assert seen[3:] == ["mock-judge", "mock-outer"]
        body = r.json()
        assert body["fusion"]["mode"] == "forced" and body["fusion"]["rounds"] == 1
        # After the one invocation the model is asked for text.
        assert mock.calls("chat")[-1]["body"]["tool_choice"] == "none"


def test_openrouter_spelling_sets_the_panel(envoy, mock):
    decl = {"type": "openrouter:fusion", "parameters": {"analysis_models": ["mock-x", "mock-y"], "model": "mock-j"}}
    r = envoy.post(CHAT, request("mock-outer", tools=[decl], tool_choice="required"))
    assert r.status_code == 200, r.text
    assert sorted(models(mock)[:2]) == ["mock-x", "mock-y"]
    assert models(mock)[2] == "mock-j"
    assert [m["model"] for m in r.json()["fusion"]["panel"]] == ["mock-x", "mock-y"]


def test_client_tool_call_is_returned_to_the_client(envoy, mock):
    r = envoy.post(CHAT, request("mock-outer:call=get_weather", tools=[{"type": "fusion"}, WEATHER]))
    assert r.status_code == 200, r.text
    choice = r.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    calls = choice["message"]["tool_calls"]
    assert [c["function"]["name"] for c in calls] == ["get_weather"]
    assert json.loads(calls[0]["function"]["arguments"]) == {"city": "Is tea healthy?"}
    assert models(mock) == ["mock-outer:call=get_weather"]
    # The client's own tools reach the model next to fusion.
    assert tool_names(mock.calls("chat")[0]) == ["get_weather", "fusion"]


def test_fusion_is_not_offered_again_once_it_ran(envoy, mock):
    # The model would call fusion twice; after the one run the tool is spent, and a
    # Chat upstream takes the fusion call in the history without its declaration
    # (the capped round of Messages outer models: tests/test_amplification.py).
    r = envoy.post(CHAT, request("mock-outer:fusion_calls=2", tools=[{"type": "fusion"}, WEATHER]))
    assert r.status_code == 200, r.text
    seen = models(mock)
    assert seen.count("mock-judge") == 1, "fusion ran once"
    assert seen.count("mock-outer:fusion_calls=2") == 2
    last = mock.calls("chat")[-1]["body"]
    assert tool_names(mock.calls("chat")[-1]) == ["get_weather"]
    result = json.loads(last["messages"][-1]["content"])
    assert result["status"] == "ok"
    body = r.json()
    assert body["fusion"]["rounds"] == 2 and body["fusion"]["invocations"] == 1
    assert body["choices"][0]["finish_reason"] == "stop"


def test_declaration_errors_are_native_400s(envoy, mock):
    cases = [
        ({"type": "fusion", "panel": "mock-a"}, "must be a list"),
        ({"type": "fusion", "panel": []}, "is empty"),
        ({"type": "fusion", "panel": [{"model": f"m{i}"} for i in range(9)]}, "at most 8"),
        ({"type": "fusion", "panel": [{"tools": []}]}, "has no `model`"),
        ({"type": "fusion", "judge": "mock-j"}, "must be an object"),
        ({"type": "openrouter:fusion", "parameters": []}, "must be an object"),
    ]
    for decl, message in cases:
        r = envoy.post(CHAT, request("mock-outer", tools=[decl]))
        assert r.status_code == 400, (decl, r.text)
        err = r.json()["error"]
        assert message in err["message"] and err["param"] == "tools"
        assert err["type"] == "invalid_request_error"
    r = envoy.post(CHAT, request("mock-outer", tools=[{"type": "fusion"}, {"type": "fusion"}]))
    assert r.status_code == 400 and "at most once" in r.json()["error"]["message"]
    assert mock.calls() == []


# --- failures degrade --------------------------------------------------------

@pytest.mark.parametrize("directive,reason", [
    ("status=500", "http_500"),
    ("status=429", "rate_limited"),
    ("status=402", "insufficient_credits"),
    ("malformed", "unusable_response"),
    ("reset", "unreachable"),
    ("empty", "empty_response"),
])
def test_failed_member_reasons(envoy, mock, directive, reason):
    mock.script({"mock-b": directive})
    r = envoy.post(CHAT, request("fusion"))
    assert r.status_code == 200, r.text
    panel = {m["model"]: m for m in r.json()["fusion"]["panel"]}
    assert panel["mock-b"]["status"] == "failed" and panel["mock-b"]["failure_reason"] == reason
    assert panel["mock-a"]["status"] == "ok"
    result = json.loads(mock.calls("chat")[-1]["body"]["messages"][-1]["content"])
    assert result["status"] == "ok"
    assert result["failed_models"] == [{"model": "mock-b", "reason": reason}]
    assert [x["model"] for x in result["responses"]] == ["mock-a", "mock-c"]


@pytest.mark.parametrize("directives,failure_reason", [
    ({m: "status=500" for m in PANEL}, "all_panels_failed"),
    ({"mock-a": "status=429", "mock-b": "status=500", "mock-c": "reset"}, "rate_limited"),
    ({"mock-a": "status=402", "mock-b": "status=500", "mock-c": "status=503"}, "insufficient_credits"),
])
def test_all_members_failed(envoy, mock, directives, failure_reason):
    mock.script(directives)
    r = envoy.post(CHAT, request("fusion"))
    assert r.status_code == 200, r.text
    assert "mock-judge" not in models(mock)
    result = json.loads(mock.calls("chat")[-1]["body"]["messages"][-1]["content"])
    assert result["status"] == "error" and result["failure_reason"] == failure_reason
    # The outer model still answers, told why.
    assert r.json()["choices"][0]["message"]["content"].startswith("mock-outer final answer.")


@pytest.mark.parametrize("directive", ["prose", "status=500", "empty", "fenced"])
def test_judge_degradation(envoy, mock, directive):
    mock.script({"mock-judge": directive})
    r = envoy.post(CHAT, request("fusion"))
    assert r.status_code == 200, r.text
    result = json.loads(mock.calls("chat")[-1]["body"]["messages"][-1]["content"])
    assert result["status"] == "ok" and len(result["responses"]) == 3
    if directive == "fenced":  # tolerated: code fence and leading text
        assert result["analysis"]["consensus"] == ["All 3 responses agree on the main point."]
        assert r.json()["fusion"]["analysis"] is True
    else:
        assert "analysis" not in result
        assert r.json()["fusion"]["analysis"] is False
        assert r.json()["fusion"]["judge"]["status"] == "failed"


# --- budgets -------------------------------------------------------------------

@pytest.fixture(scope="module")
def tight(mock):
    """An Envoy whose filter has small budgets."""
    config = demo_fusion_config()
    config["limits"] = {"max_panel": 8, "max_rounds": 2, "tool_timeout_ms": 800, "turn_timeout_ms": 2000}
    # An outer model on a Messages upstream keeps the spent fusion tool declared: a
    # model that calls it again meets the cap and the round budget.
    config["upstreams"]["anthropic"] = {"cluster": "mock", "authority": "mock", "api": "messages"}
    config["routes"] = [{"prefix": "claude-", "upstream": "anthropic"}] + config["routes"]
    e = Envoy(mock, name="tight", fusion_config=config)
    yield e
    e.stop()


def test_tool_budget_drops_slow_member(tight, mock):
    mock.script({"mock-c": "latency=5000"})
    r = tight.post(CHAT, request("fusion"))
    assert r.status_code == 200, r.text
    body = r.json()
    panel = {m["model"]: m for m in body["fusion"]["panel"]}
    assert panel["mock-c"]["failure_reason"] == "timeout"
    assert 700 <= panel["mock-c"]["latency_ms"] < 2000
    assert body["choices"][0]["finish_reason"] == "stop"
    # Every callout got the remaining budget as its timeout, never 0 (Envoy's "none").
    for c in mock.calls("chat"):
        timeout = int(c["headers"].get("x-envoy-expected-rq-timeout-ms", "0"))
        assert 0 < timeout <= 2000, c


def test_turn_budget_truncates(tight, mock):
    mock.script({"mock-outer": "latency=5000"})
    r = tight.post(CHAT, request("fusion"), timeout=10)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["fusion"]["rounds"] == 1


def test_round_budget_truncates(tight, mock):
    r = tight.post(CHAT, request("claude-outer:fusion_calls=5", tools=[{"type": "fusion"}, WEATHER]))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["fusion"]["rounds"] == 2
    assert [c["model"] for c in mock.calls("messages")].count("claude-outer:fusion_calls=5") == 2


# --- depth ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def loopback(mock):
    """A panel member whose cluster routes back into the same Envoy, asking for fusion."""
    config = demo_fusion_config()
    config["panel"] = [{"model": "mock-a"}, {"model": "fusion"}]
    config["upstreams"]["self"] = {"cluster": "self", "api": "chat"}
    config["routes"] = [{"models": ["fusion"], "upstream": "self"}] + config["routes"]
    e = Envoy(mock, name="loopback", fusion_config=config, extra_clusters=self_cluster())
    yield e
    e.stop()


def test_loopback_member_cannot_recurse(loopback, mock):
    r = loopback.post(CHAT, request("fusion"))
    assert r.status_code == 200, r.text
    # mock-a, the looped member resolved to the plain outer model, the judge, the outer model.
    assert sorted(models(mock)) == sorted(["mock-a", "mock-outer", "mock-judge", "mock-outer"])
    looped = [c for c in mock.calls("chat") if c["model"] == "mock-outer"][0]
    assert looped["headers"]["x-fusion-depth"] == "1"
    panel = {m["model"]: m["status"] for m in r.json()["fusion"]["panel"]}
    assert panel == {"mock-a": "ok", "fusion": "ok"}


def test_tool_declaration_removed_at_depth(envoy, mock):
    r = envoy.post(CHAT, request("mock-outer", tools=[{"type": "fusion"}, WEATHER],
                                 tool_choice={"type": "function", "function": {"name": "fusion"}}),
                   headers={"x-fusion-depth": "1"})
    assert r.status_code == 200
    [call] = mock.calls("chat")
    assert tool_names(call) == ["get_weather"]
    assert "tool_choice" not in call["body"]


# --- client disconnects ----------------------------------------------------------

def test_client_disconnect_mid_run(envoy, mock):
    import httpx
    import time

    mock.script({m: "latency=800" for m in PANEL})
    seen = len(envoy.log_text())  # only this test's lines count
    for _ in range(3):
        with pytest.raises(httpx.ReadTimeout):
            envoy.post(CHAT, request("fusion"), timeout=0.3)
    time.sleep(1.2)  # the panel answers arrive after the clients left
    log = envoy.log_text()[seen:].splitlines()
    # Each gone client's run is logged once as such, with its callouts still in flight.
    lines = [l for l in log if "ended with 3 callouts in flight" in l]
    gone = [json.loads(l[l.index("{"):]) for l in log if '"outcome":"client_gone"' in l]
    assert len(gone) == 3, log[-20:]
    assert len({g["run_id"] for g in gone}) == 3
    assert all(g["mode"] == "alias" and g["final"] == [] for g in gone), gone
    assert len(lines) == 3, log[-20:]
    # The VM is alive: the next fusion request is served normally.
    mock.reset()
    r = envoy.post(CHAT, request("fusion"))
    assert r.status_code == 200 and r.json()["fusion"]["analysis"] is True


TRUNCATION_REQUESTS = {
    "/v1/chat/completions": request("fusion"),
    "/v1/responses": {"model": "fusion", "input": "Is tea healthy?"},
    "/v1/messages": {"model": "fusion", "max_tokens": 100, "messages": [{"role": "user", "content": "Is tea healthy?"}]},
}


@pytest.mark.parametrize("path", list(TRUNCATION_REQUESTS))
@pytest.mark.parametrize("budget", ["turn", "rounds"])
def test_truncation_in_each_api(tight, mock, path, budget):
    body = copy.deepcopy(TRUNCATION_REQUESTS[path])
    if budget == "turn":
        mock.script({"mock-outer": "latency=5000"})
    else:
        # Auto mode with a client tool: the model keeps calling fusion until the rounds run out.
        body["model"] = "claude-outer:fusion_calls=5"
        if path == "/v1/chat/completions":
            body["tools"] = [{"type": "fusion"}, WEATHER]
        elif path == "/v1/responses":
            body["tools"] = [{"type": "fusion"}, {"type": "function", **WEATHER["function"]}]
        else:
            f = WEATHER["function"]
            body["tools"] = [{"type": "fusion"}, {"name": f["name"], "description": f["description"],
                                                  "input_schema": f["parameters"]}]
    r = tight.post(path, body, timeout=10)
    assert r.status_code == 200, r.text
    b = r.json()
    if path == "/v1/chat/completions":
        assert b["choices"][0]["finish_reason"] == "length"
    elif path == "/v1/responses":
        assert b["status"] == "incomplete" and b["incomplete_details"]["reason"] == "max_output_tokens"
    else:
        assert b["stop_reason"] == "pause_turn"
    assert b["fusion"]["rounds"] == (1 if budget == "turn" else 2)
