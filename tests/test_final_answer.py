"""The final answer up the request's own route (issue 15), through a real Envoy.

Two mock servers stand for two providers: `good` (the session's mock) and `evil`,
each with its own operator key. The route shapes are the ones operators use:
an adversarial prefix layout where a re-routed request would carry one provider's
key to the other, the host-based virtual host with host rewrites of
deploy/istio/gateway.yaml, and the path split with host rewrites of
envoy/providers.yaml. The mocks' call logs say which server got which key."""

from __future__ import annotations

import gzip
import json
import re

import httpx
import pytest

from harness import RUN_DIR, Envoy, Mock

CHAT = "/v1/chat/completions"
MESSAGES = "/v1/messages"
KEYS = {"GOOD_KEY": "key-for-good", "EVIL_KEY": "key-for-evil"}

TEMPLATE = """
admin:
  address:
    socket_address: {address: 127.0.0.1, port_value: {{ADMIN_PORT}}}
static_resources:
  listeners:
  - name: llm
    address:
      socket_address: {address: 127.0.0.1, port_value: {{LISTEN_PORT}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: llm
          route_config:
            virtual_hosts: VIRTUAL_HOSTS
          http_filters:
          - name: fusion
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                name: fusion
                root_id: fusion
                vm_config:
                  vm_id: fusion
                  runtime: envoy.wasm.runtime.v8
                  code: {local: {filename: "{{WASM_PATH}}"}}
                  environment_variables: {host_env_keys: [GOOD_KEY, EVIL_KEY]}
                allow_on_headers_stop_iteration: true
                configuration:
                  "@type": type.googleapis.com/google.protobuf.StringValue
                  value: FUSION_CONFIG
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: good
    connect_timeout: 1s
    type: STATIC
    load_assignment:
      cluster_name: good
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address: {address: 127.0.0.1, port_value: {{MOCK_PORT}}}
  - name: evil
    connect_timeout: 1s
    type: STATIC
    load_assignment:
      cluster_name: evil
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address: {address: 127.0.0.1, port_value: EVIL_PORT}
"""

# Routes `/secure/` -> evil (prefix rewritten away), everything else -> good: a request
# routed again on a changed path or host would carry evil's key to good or the reverse.
ADVERSARIAL = [{
    "name": "llm", "domains": ["*"],
    "routes": [
        {"match": {"prefix": "/secure/"}, "route": {"cluster": "evil", "prefix_rewrite": "/", "timeout": "60s"}},
        {"match": {"prefix": "/"}, "route": {"cluster": "good", "timeout": "60s"}},
    ],
}]

# deploy/istio/gateway.yaml: one virtual host for llm.example.com, the Messages path to
# one provider, everything else to the other, each with a host rewrite.
GATEWAY = [{
    "name": "llm", "domains": ["llm.example.com"],
    "routes": [
        {"match": {"prefix": "/v1/messages"},
         "route": {"cluster": "evil", "host_rewrite_literal": "api.anthropic.com", "timeout": "60s"}},
        {"match": {"prefix": "/"},
         "route": {"cluster": "good", "host_rewrite_literal": "api.openai.com", "timeout": "60s"}},
    ],
}]

# envoy/providers.yaml: the same split on any host.
PROVIDERS = [{**GATEWAY[0], "domains": ["*"]}]


def fusion_config(outer: str, extra: dict | None = None) -> dict:
    return {**{
        "aliases": ["fusion"],
        "outer_model": outer,
        "panel": [{"model": "good/a"}, {"model": "good/b"}],
        "judge": {"model": "good/judge"},
        "depth_header": "x-fusion-depth",
        "limits": {"tool_timeout_ms": 20000, "turn_timeout_ms": 40000},
        "upstreams": {
            "good": {"cluster": "good", "authority": "api.openai.com", "api": "chat",
                     "auth": {"type": "bearer", "env": "GOOD_KEY"}},
            "evil": {"cluster": "evil", "authority": "api.openai.com", "api": "chat",
                     "auth": {"type": "bearer", "env": "EVIL_KEY"}},
            "evil-messages": {"cluster": "evil", "authority": "api.anthropic.com", "api": "messages",
                              "auth": {"type": "header", "name": "x-api-key", "env": "EVIL_KEY"}},
        },
        "routes": [
            {"prefix": "good/", "strip_prefix": True, "upstream": "good"},
            {"prefix": "evil/", "strip_prefix": True, "upstream": "evil"},
            {"prefix": "evilm/", "strip_prefix": True, "upstream": "evil-messages"},
        ],
    }, **(extra or {})}


@pytest.fixture(scope="module")
def evil():
    m = Mock()
    yield m
    m.stop()


@pytest.fixture(autouse=True)
def clean_evil(evil):
    evil.reset()
    yield


def start(mock, evil, name: str, vhosts: list, outer: str, extra: dict | None = None) -> Envoy:
    def transform(text: str) -> str:
        return (text.replace("VIRTUAL_HOSTS", json.dumps(vhosts))
                .replace("FUSION_CONFIG", json.dumps(json.dumps(fusion_config(outer, extra))))
                .replace("EVIL_PORT", str(evil.port)))
    RUN_DIR.mkdir(exist_ok=True)
    path = RUN_DIR / f"{name}.template.yaml"
    path.write_text(TEMPLATE)
    return Envoy(mock, template=path, name=name, env=KEYS, transform=transform)


@pytest.fixture(scope="module")
def adversarial_good(mock, evil):
    e = start(mock, evil, "final-adv-good", ADVERSARIAL, "good/outer")
    yield e
    e.stop()


@pytest.fixture(scope="module")
def adversarial_evil(mock, evil):
    e = start(mock, evil, "final-adv-evil", ADVERSARIAL, "evil/outer")
    yield e
    e.stop()


def chat_request(**extra) -> dict:
    body = {"model": "fusion", "stream": True,
            "messages": [{"role": "user", "content": "Why is the sky blue?"}]}
    body.update(extra)
    return body


def events(text: str) -> list[dict]:
    out = []
    for line in text.splitlines():
        if line.startswith("data: ") and line != "data: [DONE]":
            out.append(json.loads(line[len("data: "):]))
    return out


def auth_of(call: dict) -> str:
    h = call["headers"]
    return h.get("authorization") or h.get("x-api-key") or ""


def assert_keys_stay_home(mock, evil) -> None:
    """Each mock only ever saw its own operator's key (or none)."""
    for c in mock.calls():
        assert KEYS["EVIL_KEY"] not in auth_of(c), f"evil's key reached good: {c['model']} {c['path']}"
    for c in evil.calls():
        assert KEYS["GOOD_KEY"] not in auth_of(c), f"good's key reached evil: {c['model']} {c['path']}"


def finals(m) -> list[dict]:
    return [c for c in m.calls() if c["model"] == "outer"]


def test_answering_model_elsewhere_is_answered_by_callout(adversarial_good, mock, evil):
    # The request's route goes to evil; the answering model is good's: no stream up
    # the route (it would carry good's key to evil), the answer comes by callout.
    r = adversarial_good.post("/secure" + CHAT, chat_request(), headers={"authorization": "Bearer client"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/event-stream")
    assert events(r.text)[-1]["fusion"]["final"][0]["status"] == "ok"
    [final] = finals(mock)
    assert auth_of(final) == f"Bearer {KEYS['GOOD_KEY']}"
    assert final["body"].get("stream") in (None, False), "answered by callout, not up the route"
    assert evil.calls() == [], "nothing of the fusion run went to evil"
    assert_keys_stay_home(mock, evil)


def test_stream_up_a_prefix_rewritten_route_keeps_its_cluster(adversarial_evil, mock, evil):
    # The route (/secure/ -> evil, prefix rewritten) serves the answering model: the
    # final answer streams up it, to evil, with evil's key and the rewritten path.
    r = adversarial_evil.post("/secure" + CHAT, chat_request(), headers={"authorization": "Bearer client"})
    assert r.status_code == 200, r.text
    evs = events(r.text)
    assert evs[-1]["fusion"]["final"][0]["status"] == "ok"
    assert "x-fusion-run-id" in r.headers
    assert finals(mock) == [], "the final call must not be routed again to good"
    [final] = finals(evil)
    assert final["body"]["stream"] is True, "streamed up the route"
    assert final["path"] == CHAT
    assert auth_of(final) == f"Bearer {KEYS['EVIL_KEY']}"
    assert "client" not in json.dumps(final["headers"]), "the client's key does not go along"
    assert_keys_stay_home(mock, evil)


def test_answering_model_on_another_cluster_than_the_route(adversarial_evil, mock, evil):
    # Route: good; answering model: evil's. Callout to evil with evil's key; nothing
    # of evil's reaches good.
    r = adversarial_evil.post(CHAT, chat_request())
    assert r.status_code == 200, r.text
    [final] = finals(evil)
    assert final["body"].get("stream") in (None, False)
    assert auth_of(final) == f"Bearer {KEYS['EVIL_KEY']}"
    assert_keys_stay_home(mock, evil)


@pytest.mark.parametrize("shape", ["gateway", "providers"])
def test_host_rewritten_routes_stream_the_final_answer(mock, evil, shape):
    vhosts = GATEWAY if shape == "gateway" else PROVIDERS
    e = start(mock, evil, f"final-{shape}", vhosts, "good/outer")
    try:
        host = {"host": "llm.example.com"}
        r = e.post(CHAT, chat_request(), headers=host)
        assert r.status_code == 200, r.text
        assert events(r.text)[-1]["fusion"]["final"][0]["status"] == "ok"
        [final] = finals(mock)
        assert final["body"]["stream"] is True, "streamed up the route"
        assert final["headers"]["host"] == "api.openai.com", "the route's own host rewrite applied"
        assert auth_of(final) == f"Bearer {KEYS['GOOD_KEY']}"
        assert_keys_stay_home(mock, evil)
        # A Messages request on the Messages route: its answering model is good's (Chat),
        # not the route's: answered by callout, and good's key never reaches evil.
        mock.reset()
        body = {"model": "fusion", "stream": True, "max_tokens": 200,
                "messages": [{"role": "user", "content": "Why is the sky blue?"}]}
        r = e.post(MESSAGES, body, headers={**host, "anthropic-version": "2023-06-01"})
        assert r.status_code == 200, r.text
        assert "event: message_stop" in r.text
        assert evil.calls() == []
        assert_keys_stay_home(mock, evil)
    finally:
        e.stop()


def test_messages_stream_up_a_host_rewritten_route(mock, evil):
    e = start(mock, evil, "final-gateway-messages", GATEWAY, "evilm/outer")
    try:
        body = {"model": "fusion", "stream": True, "max_tokens": 200,
                "messages": [{"role": "user", "content": "Why is the sky blue?"}]}
        r = e.post(MESSAGES, body, headers={"host": "llm.example.com", "anthropic-version": "2023-06-01",
                                            "x-api-key": "client-key"})
        assert r.status_code == 200, r.text
        assert "event: message_stop" in r.text
        [final] = finals(evil)
        assert final["body"]["stream"] is True
        assert final["headers"]["host"] == "api.anthropic.com"
        assert final["headers"].get("x-api-key") == KEYS["EVIL_KEY"]
        assert "authorization" not in final["headers"]
        assert_keys_stay_home(mock, evil)
    finally:
        e.stop()


def test_final_call_is_the_clients_body_patched(adversarial_good, mock, evil):
    # Fields the neutral model does not carry reach the final call as the client sent them.
    extra = {"response_format": {"type": "json_object"}, "seed": 7, "user": "u-1",
             "stream_options": {"include_usage": True}}
    r = adversarial_good.post(CHAT, chat_request(**extra))
    assert r.status_code == 200, r.text
    [final] = finals(mock)
    assert final["body"]["stream"] is True
    for k in ("response_format", "seed", "user"):
        assert final["body"][k] == extra[k], k
    assert final["body"]["model"] == "outer"
    roles = [m["role"] for m in final["body"]["messages"]]
    assert roles == ["user", "assistant", "tool"], roles
    # The client asked for the usage chunk: it carries the run's sum.
    usage = [ev for ev in events(r.text) if ev.get("usage")]
    assert usage and usage[-1]["usage"]["prompt_tokens"] > final["body"].get("max_tokens", 0)


def test_client_tools_stream_up_the_route(adversarial_good, mock, evil):
    tool = {"type": "function", "function": {"name": "get_weather", "description": "Weather",
                                             "parameters": {"type": "object", "properties": {}}}}
    r = adversarial_good.post(CHAT, chat_request(tools=[tool]))
    assert r.status_code == 200, r.text
    [final] = finals(mock)
    assert final["body"]["stream"] is True, "a client with tools is streamed too"
    names = [t["function"]["name"] for t in final["body"]["tools"]]
    assert "get_weather" in names
    assert events(r.text)[-1]["fusion"]["final"][0]["status"] == "ok"


def test_gzip_client_gets_the_report(adversarial_good, mock, evil):
    r = adversarial_good.post(CHAT, chat_request(), headers={"accept-encoding": "gzip"})
    assert r.status_code == 200, r.text
    [final] = finals(mock)
    assert final["headers"].get("accept-encoding") == "identity"
    assert events(r.text)[-1]["fusion"]["final"][0]["status"] == "ok"


def run_line(envoy, run_id: str) -> dict:
    for line in envoy.log_text().splitlines():
        start = line.find('{"')
        if '"event":"fusion_run"' in line and run_id in line and start >= 0:
            return json.loads(line[start:])
    raise AssertionError(f"no log line for run {run_id}")


def runs_counted(envoy, outcome: str) -> int:
    text = httpx.get(f"{envoy.admin}/stats").text
    return sum(int(m.group(1)) for m in
               re.finditer(rf"^wasmcustom\.mode=\.=\w+;\.;outcome=\.={outcome};\.;fusion_runs_total: (\d+)$", text, re.M))


def test_provider_error_on_the_streamed_final_call_is_a_counted_failure(adversarial_good, mock, evil):
    mock.script({"outer": "status=500"})
    errors_before = runs_counted(adversarial_good, "error")
    r = adversarial_good.post(CHAT, chat_request())
    assert r.status_code == 500, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert "error" in body and "message" in body["error"]
    assert body["fusion"]["final"][0]["status"] != "ok"
    line = run_line(adversarial_good, r.headers["x-fusion-run-id"])
    assert line["outcome"] == "error"
    assert runs_counted(adversarial_good, "error") == errors_before + 1


# A route matching on a header the filter sets on the final request (here the depth
# header): Envoy picks the route again after the filter's changes, and it lands on evil.
HEADER_MATCH = [{
    "name": "llm", "domains": ["*"],
    "routes": [
        {"match": {"prefix": "/", "headers": [{"name": "x-fusion-depth", "present_match": True}]},
         "route": {"cluster": "evil", "timeout": "60s"}},
        {"match": {"prefix": "/"}, "route": {"cluster": "good", "timeout": "60s"}},
    ],
}]


def test_answer_from_a_rerouted_final_request_is_refused(mock, evil):
    # Such a route is a misconfiguration (docs/deployment.md): the filter cannot stop
    # Envoy sending the request there, but it sees which cluster answered and never
    # passes that answer on as the configured model's: the client gets an error in its
    # API naming the cluster, and the run is counted as an error.
    e = start(mock, evil, "final-header-match", HEADER_MATCH, "good/outer")
    try:
        r = e.post(CHAT, chat_request())
        assert r.status_code == 502, r.text
        assert r.headers["content-type"].startswith("application/json")
        err = r.json()["error"]
        assert "`evil`" in err["message"], err
        assert runs_counted(e, "error") == 1
    finally:
        e.stop()


# --- the streamed final request is a call like any other -------------------------------------
#
# It goes up the client's own route instead of by callout, but the bounds and edits every
# callout gets apply to it alike: the upstream-call budget, the operator's
# `unsupported_params`, and (Messages) thinking off when the fusion call it answers has no
# signed thinking block (the mock refuses that as Anthropic does).

def test_streamed_final_request_counts_against_the_upstream_budget(mock, evil):
    # Panel (2) and judge (1) spend the 3 calls: the final request is not sent, up the
    # route or by callout, and the turn ends truncated by the upstream budget.
    limits = {"tool_timeout_ms": 20000, "turn_timeout_ms": 40000, "max_upstream_calls": 3}
    e = start(mock, evil, "final-budget", ADVERSARIAL, "evil/outer", {"limits": limits})
    try:
        r = e.post("/secure" + CHAT, chat_request())
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("text/event-stream")
        fusion = events(r.text)[-1]["fusion"]
        assert fusion["truncated_by"] == "upstream", fusion
        assert finals(evil) == [] and finals(mock) == [], "a 4th call was sent"
        assert len(mock.calls()) + len(evil.calls()) == 3
    finally:
        e.stop()


@pytest.fixture(scope="module")
def messages_route(mock, evil):
    # The final answer of a Messages client streams up its route to evil; the operator
    # says the answering model takes no `metadata`.
    extra = {"models": {"evilm/outer": {"unsupported_params": ["metadata"]}}}
    e = start(mock, evil, "final-messages-edits", GATEWAY, "evilm/outer", extra)
    yield e
    e.stop()


def messages_request(**extra) -> dict:
    body = {"model": "fusion", "stream": True, "max_tokens": 2048,
            "messages": [{"role": "user", "content": "Why is the sky blue?"}]}
    body.update(extra)
    return body


MESSAGES_HEADERS = {"host": "llm.example.com", "anthropic-version": "2023-06-01"}


def test_streamed_final_request_turns_thinking_off_without_signed_blocks(messages_route, mock, evil):
    # The fusion call the final request answers was the filter's, with no signed thinking
    # block: with thinking on, Anthropic refuses the request, so it goes without thinking.
    r = messages_route.post(MESSAGES, messages_request(thinking={"type": "enabled", "budget_tokens": 1024}),
                            headers=MESSAGES_HEADERS)
    assert r.status_code == 200, r.text
    assert "event: message_stop" in r.text
    [final] = finals(evil)
    assert final["body"]["stream"] is True, "streamed up the route"
    assert "thinking" not in final["body"], final["body"]


def test_streamed_final_request_drops_the_operators_unsupported_params(messages_route, mock, evil):
    evil.script({"outer": "unsupported=metadata"})
    r = messages_route.post(MESSAGES, messages_request(metadata={"user_id": "u-1"}), headers=MESSAGES_HEADERS)
    assert r.status_code == 200, r.text
    assert "event: message_stop" in r.text
    [final] = finals(evil)
    assert final["body"]["stream"] is True, "streamed up the route"
    assert "metadata" not in final["body"], final["body"]
