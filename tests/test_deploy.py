"""Issue: operator deployment. The shipped Envoy configs load in the real Envoy; the
providers config runs against the mock with its provider clusters on loopback; the Istio
manifests are checked field by field against the Istio APIs and their plugin configuration
runs in a real Envoy; `make oci` builds an image layout Istio can pull."""

from __future__ import annotations

import copy
import gzip
import hashlib
import io
import json
import os
import re
import secrets
import subprocess
import sys
import tarfile
from pathlib import Path

import httpx
import pytest
import yaml

from harness import ENVOY, ROOT, RUN_DIR, WASM, Envoy, free_port, render

ENVOY_DIR = ROOT / "envoy"
ISTIO_DIR = ROOT / "deploy" / "istio"
PROVIDERS = ENVOY_DIR / "providers.yaml"
SHIPPED = sorted(ENVOY_DIR.glob("*.yaml"))
KEY_VARS = ["OPENAI_API_KEY", "ANTHROPIC_API_KEY", "OPENROUTER_API_KEY"]
# Fresh fake keys per run: if one shows up in a log, it came from this run.
FAKE_KEYS = {var: f"sk-fake-{var.split('_')[0].lower()}-{secrets.token_hex(12)}" for var in KEY_VARS}
# Everything at trace, the filter's own `wasm` logs included, except the two Envoy
# components that dump every request header at debug level (see docs/deployment.md).
QUIET_HEADER_DUMPS = ("--component-log-level", "router:info,http:info")

CHAT = "/v1/chat/completions"
MESSAGES = "/v1/messages"


def ask(**extra) -> dict:
    body = {"model": "fusion", "messages": [{"role": "user", "content": "Why is the sky blue?"}]}
    body.update(extra)
    return body


def env_without_keys() -> dict:
    return {k: v for k, v in os.environ.items() if k not in KEY_VARS}


def validate(config: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(ENVOY), "--mode", "validate", "-c", str(config), "-l", "info",
         "--base-id", str(free_port())],
        capture_output=True, text=True, timeout=120, env=env)


def render_shipped(template: Path) -> Path:
    RUN_DIR.mkdir(exist_ok=True)
    return render(template, RUN_DIR / f"validate-{template.stem}.yaml",
                  LISTEN_PORT=free_port(), ADMIN_PORT=free_port(), MOCK_PORT=free_port(),
                  WASM_PATH=WASM)


def loopback_cluster(name: str, port: int) -> dict:
    return {
        "name": name,
        "connect_timeout": "1s",
        "type": "STATIC",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]},
    }


def providers_on_loopback(mock_port: int):
    """Points every provider cluster at the mock and drops the TLS transport sockets."""
    def transform(text: str) -> str:
        cfg = yaml.safe_load(text)
        clusters = cfg["static_resources"]["clusters"]
        cfg["static_resources"]["clusters"] = [loopback_cluster(c["name"], mock_port) for c in clusters]
        return yaml.safe_dump(cfg, sort_keys=False)
    return transform


def fusion_filter(cfg: dict) -> dict:
    """The fusion Wasm filter's PluginConfig in a parsed Envoy config."""
    hcm = cfg["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    return next(f for f in hcm["http_filters"] if f["name"] == "fusion")["typed_config"]["config"]


def assert_no_key_in(log: str) -> None:
    for var, key in FAKE_KEYS.items():
        assert key not in log, f"{var}'s value appears in the Envoy log"


# ---------------------------------------------------------------- shipped Envoy configs


@pytest.mark.parametrize("template", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_envoy_config_passes_envoy_validate(template):
    """`envoy --mode validate` builds every listener, cluster and filter, and runs the
    filter's on_configure: a bad filter configuration fails here too."""
    rendered = render_shipped(template)
    out = validate(rendered, {**os.environ, **FAKE_KEYS})
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-3000:]
    assert f"configuration '{rendered}' OK" in out.stdout, text[-3000:]
    assert "fusion: configured" in text, text[-3000:]
    plugin = fusion_filter(yaml.safe_load(rendered.read_text()))
    assert plugin["failure_policy"] == "FAIL_RELOAD"
    assert plugin["allow_on_headers_stop_iteration"] is True


def test_shipped_configs_include_the_providers_config():
    assert PROVIDERS in SHIPPED and len(SHIPPED) >= 2, SHIPPED


def test_providers_config_without_keys_is_rejected_with_the_variable_named():
    out = validate(render_shipped(PROVIDERS), env_without_keys())
    text = out.stdout + out.stderr
    assert "error initializing configuration" in text, text[-3000:]
    assert re.search(r"invalid fusion configuration: `upstreams\.\w+\.auth\.env`: environment variable "
                     r"`(OPENAI|ANTHROPIC|OPENROUTER)_API_KEY` is not set", text), text[-3000:]


def test_providers_config_routes_and_tls():
    """The provider clusters carry TLS with SNI and a certificate check; the listener
    routes Messages to Anthropic and everything else to OpenAI."""
    cfg = yaml.safe_load(render_shipped(PROVIDERS).read_text())
    clusters = {c["name"]: c for c in cfg["static_resources"]["clusters"]}
    for name, host in [("openai", "api.openai.com"), ("anthropic", "api.anthropic.com"),
                       ("openrouter", "openrouter.ai")]:
        c = clusters[name]
        addr = c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
        assert (addr["address"], addr["port_value"]) == (host, 443)
        tls = c["transport_socket"]["typed_config"]
        assert tls["@type"].endswith("UpstreamTlsContext")
        assert tls["sni"] == host
        vc = tls["common_tls_context"]["validation_context"]
        assert vc["trusted_ca"]["filename"]
        assert vc["match_typed_subject_alt_names"] == [{"san_type": "DNS", "matcher": {"exact": host}}]
    assert "transport_socket" not in clusters["vllm"]
    hcm = cfg["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    routes = hcm["route_config"]["virtual_hosts"][0]["routes"]
    assert [(r["match"]["prefix"], r["route"]["cluster"]) for r in routes] == [
        ("/v1/messages", "anthropic"), ("/", "openai")]
    plugin = fusion_filter(cfg)
    assert plugin["vm_config"]["environment_variables"]["host_env_keys"] == KEY_VARS
    fusion = json.loads(plugin["configuration"]["value"])
    for up in fusion["upstreams"].values():
        assert up["cluster"] in clusters
    assert all(k not in plugin["configuration"]["value"] for k in ("sk-", "Bearer"))


# ---------------------------------------------------------------- providers config, run


@pytest.fixture(scope="module")
def providers(mock):
    e = Envoy(mock, template=PROVIDERS, name="providers", env=FAKE_KEYS, log_level="trace",
              extra_args=QUIET_HEADER_DUMPS, transform=providers_on_loopback(mock.port))
    yield e
    e.stop()


def calls_by_model(mock) -> dict:
    out: dict = {}
    for c in mock.calls():
        out.setdefault(c["model"], []).append(c)
    return out


def test_providers_fusion_reaches_every_provider_with_its_key(providers, mock):
    r = providers.post(CHAT, ask())
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["content"]
    report = body["fusion"]
    assert [(m["model"], m["status"]) for m in report["panel"]] == [
        ("openai/gpt-4.1", "ok"), ("anthropic/claude-sonnet-4-5", "ok"),
        ("openrouter/google/gemini-2.5-pro", "ok"), ("vllm/meta-llama/Llama-3.1-8B-Instruct", "ok")]
    assert report["judge"]["status"] == "ok" and report["analysis"] is True

    by_model = calls_by_model(mock)
    # Prefixes are stripped; each provider gets its own path, host and credential.
    assert sorted(by_model) == sorted(["gpt-4.1", "claude-sonnet-4-5", "google/gemini-2.5-pro",
                                       "meta-llama/Llama-3.1-8B-Instruct", "gpt-4.1-mini"])
    openai_calls = by_model["gpt-4.1"] + by_model["gpt-4.1-mini"]
    assert len(openai_calls) == 3  # panel member, judge, outer model
    for c in openai_calls:
        assert (c["path"], c["headers"]["host"]) == ("/v1/chat/completions", "api.openai.com")
        assert c["headers"]["authorization"] == f"Bearer {FAKE_KEYS['OPENAI_API_KEY']}"
        assert "x-api-key" not in c["headers"]
    [claude] = by_model["claude-sonnet-4-5"]
    assert (claude["path"], claude["api"], claude["headers"]["host"]) == ("/v1/messages", "messages", "api.anthropic.com")
    assert claude["headers"]["x-api-key"] == FAKE_KEYS["ANTHROPIC_API_KEY"]
    assert claude["headers"]["anthropic-version"] == "2023-06-01"
    assert "authorization" not in claude["headers"]
    [gemini] = by_model["google/gemini-2.5-pro"]
    assert (gemini["path"], gemini["headers"]["host"]) == ("/api/v1/chat/completions", "openrouter.ai")
    assert gemini["headers"]["authorization"] == f"Bearer {FAKE_KEYS['OPENROUTER_API_KEY']}"
    [llama] = by_model["meta-llama/Llama-3.1-8B-Instruct"]
    assert (llama["path"], llama["headers"]["host"]) == ("/v1/chat/completions", "vllm")
    assert "authorization" not in llama["headers"] and "x-api-key" not in llama["headers"]
    for c in mock.calls():
        assert c["headers"]["x-fusion-depth"] == "1"

    log = providers.log_text()
    assert "fusion: configured" in log and "[trace][wasm]" in log, "the log must be the real, verbose one"
    assert_no_key_in(log)


def test_providers_streamed_final_answer_goes_up_the_route_with_the_operator_key(providers, mock):
    """The listener routes Chat clients to the `openai` cluster, which also serves the
    outer model: the final answer streams up the route, with the filter's credential."""
    r = providers.post(CHAT, ask(stream=True))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/event-stream")
    assert r.text.rstrip().endswith("data: [DONE]")
    outer = [c for c in mock.calls() if c["model"] == "gpt-4.1" and c["body"].get("stream")]
    assert len(outer) == 1, [(c["model"], c["body"].get("stream")) for c in mock.calls()]
    assert outer[0]["headers"]["authorization"] == f"Bearer {FAKE_KEYS['OPENAI_API_KEY']}"
    assert outer[0]["headers"]["host"] == "api.openai.com"
    assert_no_key_in(providers.log_text())


def test_providers_messages_client_gets_fusion(providers, mock):
    r = providers.post(MESSAGES, ask(max_tokens=256))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["type"] == "message"
    assert [b["type"] for b in body["content"]][-1] == "text" and body["content"][-1]["text"]
    assert len(mock.calls()) == 6  # 4 members, judge, outer model
    assert_no_key_in(providers.log_text())


def test_providers_pass_through_keeps_the_clients_own_key(providers, mock):
    """A request that is not fusion goes up the listener's route unchanged: Messages to
    Anthropic with the client's own key, never the operator's."""
    r = providers.post(MESSAGES, {"model": "claude-sonnet-4-5", "max_tokens": 64,
                                  "messages": [{"role": "user", "content": "hi"}]},
                       headers={"x-api-key": "client-own-key", "anthropic-version": "2023-06-01"})
    assert r.status_code == 200, r.text
    [call] = mock.calls()
    assert call["path"] == "/v1/messages"
    assert call["headers"]["host"] == "api.anthropic.com"
    assert call["headers"]["x-api-key"] == "client-own-key"
    assert "x-fusion-depth" not in call["headers"]
