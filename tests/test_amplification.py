"""Issue 16, amplification through the real Envoy: once fusion ran, outer rounds
cannot loop on the fusion tool, a large request is not copied into the
filter's own fusion call, parameters reach each upstream within its API's
range (and the report says so), and costs print without float noise."""

import json

import pytest

from harness import Envoy, assert_no_rejections, demo_fusion_config

CHAT = "/v1/chat/completions"
RESPONSES = "/v1/responses"
MESSAGES = "/v1/messages"
PANEL = [f"mock-m{i}" for i in range(8)]
WEATHER_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


@pytest.fixture(scope="module")
def wide(mock):
    """Eight members, and the demo's ten outer rounds and generous byte caps."""
    config = demo_fusion_config()
    config["panel"] = [{"model": m} for m in PANEL]
    # An outer model on a Messages upstream (the same mock, spoken to in Anthropic's API).
    config["upstreams"]["anthropic"] = {"cluster": "mock", "authority": "mock", "api": "messages"}
    config["routes"] = [{"prefix": "claude-", "upstream": "anthropic"}] + config["routes"]
    e = Envoy(mock, name="amplification", fusion_config=config)
    yield e
    e.stop()


def size(call):
    return len(json.dumps(call["body"], separators=(",", ":")))


def auto_request(path, model, question="Is tea healthy?"):
    """A client tool next to the fusion declaration: the outer model decides each round."""
    if path == CHAT:
        return {"model": model, "messages": [{"role": "user", "content": question}],
                "tools": [{"type": "fusion"},
                          {"type": "function", "function": {"name": "get_weather", "parameters": WEATHER_SCHEMA}}]}
    if path == RESPONSES:
        return {"model": model, "input": question,
                "tools": [{"type": "fusion"}, {"type": "function", "name": "get_weather", "parameters": WEATHER_SCHEMA}]}
    return {"model": model, "max_tokens": 200, "messages": [{"role": "user", "content": question}],
            "tools": [{"type": "fusion"}, {"name": "get_weather", "input_schema": WEATHER_SCHEMA}]}


@pytest.mark.parametrize("path", [CHAT, RESPONSES, MESSAGES], ids=["chat", "responses", "messages"])
def test_a_model_that_keeps_calling_fusion_does_not_loop(wide, mock, path):
    # The outer model calls fusion every round it is offered (up to 20 times); on
    # Messages it is served by a Messages upstream, elsewhere by a Chat one.
    outer_model = "claude-outer" if path == MESSAGES else "mock-outer"
    r = wide.post(path, auto_request(path, f"{outer_model}:fusion_calls=20"))
    assert r.status_code == 200, r.text
    assert_no_rejections(mock)
    outer = [c for c in mock.calls() if c["model"].startswith(outer_model)]
    fusion = r.json()["fusion"]
    assert fusion["invocations"] == 1
    assert len([c for c in mock.calls() if c["model"] in PANEL]) == 8
    if path == MESSAGES:
        # Anthropic needs the spent tool declared: one capped round, then the turn ends.
        assert len(outer) == 3, [c["model"] for c in mock.calls()]
        assert fusion["truncated_by"] == "rounds"
        assert [t.get("name") for t in outer[-1]["body"]["tools"]] == ["get_weather", "fusion"]
    else:
        # OpenAI's APIs take the fusion call in the history without the tool: not offered again.
        assert len(outer) == 2, [c["model"] for c in mock.calls()]
        names = [t.get("name") or t.get("function", {}).get("name") for t in outer[-1]["body"]["tools"]]
        assert names == ["get_weather"]
    # 8 members + judge + at most 3 outer rounds, against 19 calls before.
    assert len(mock.calls()) <= 12


def test_a_large_request_is_sent_once_per_call(wide, mock):
    question = "Is tea healthy? " + "x" * 960_000
    r = wide.post(CHAT, {"model": "fusion", "messages": [{"role": "user", "content": question}]}, timeout=120)
    assert r.status_code == 200, r.text
    assert_no_rejections(mock)
    calls = mock.calls()
    request_bytes = len(question)
    outer = [c for c in calls if c["model"] == "mock-outer"]
    assert len(outer) == 1
    # The final round carries the conversation and the tool result, not the question twice.
    assert size(outer[0]) < request_bytes * 1.1, (size(outer[0]), request_bytes)
    # The whole turn: 8 members and the judge each need the conversation once, plus the final round.
    total = sum(size(c) for c in calls)
    assert total < request_bytes * (len(PANEL) + 2) * 1.1, (total, request_bytes)
    # The report shows the question call's preview, not a copy of the question.
    assert len(json.dumps(r.json()["fusion"])) < 100_000


@pytest.fixture(scope="module")
def mixed(mock):
    """mock-b on a Messages upstream (temperature 0 to 1), the rest on Chat (0 to 2), with prices."""
    config = demo_fusion_config()
    config["upstreams"]["anthropic"] = {"cluster": "mock", "authority": "mock", "api": "messages"}
    config["routes"] = [{"prefix": "mock-b", "upstream": "anthropic"}] + config["routes"]
    e = Envoy(mock, name="amplification-mixed", fusion_config=config)
    yield e
    e.stop()


def test_temperature_fits_each_members_api_and_the_report_says_so(mixed, mock):
    r = mixed.post(CHAT, {"model": "fusion", "temperature": 1.5,
                          "messages": [{"role": "user", "content": "Is tea healthy?"}]})
    assert r.status_code == 200, r.text
    assert_no_rejections(mock)
    sent = {c["model"]: c["body"].get("temperature") for c in mock.calls() if c["model"] in ("mock-a", "mock-b", "mock-c")}
    assert sent == {"mock-a": 1.5, "mock-b": 1, "mock-c": 1.5}
    panel = {m["model"]: m for m in r.json()["fusion"]["panel"]}
    assert all(m["status"] == "ok" for m in panel.values()), panel
    assert panel["mock-b"]["clamped"] == [{"param": "temperature", "asked": 1.5, "sent": 1.0}]
    assert "clamped" not in panel["mock-a"]


def test_costs_have_no_float_noise(mixed, mock):
    r = mixed.post(CHAT, {"model": "fusion", "messages": [{"role": "user", "content": "Is tea healthy? " * 37}]})
    assert r.status_code == 200, r.text
    fusion = r.json()["fusion"]
    costs = [fusion["cost"]] + [c["cost"] for c in fusion["panel"] + [fusion["judge"]] + fusion["final"]]
    for cost in costs:
        assert cost is not None and round(cost, 10) == cost and len(repr(cost)) <= 14, costs
