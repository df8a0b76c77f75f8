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
import time
from pathlib import Path

import httpx
import pytest
import yaml

from harness import ENVOY, ROOT, RUN_DIR, WASM, Envoy, free_port, has_stats_access_logger, render

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


# Workers each shipped config is sized for (docs/deployment.md, "Circuit breakers").
SIZED_FOR_WORKERS = {"demo.yaml": 2, "providers.yaml": 4}


@pytest.mark.parametrize("template", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_config_sizes_buffers_breakers_errors_and_metric_tags(template):
    cfg = yaml.safe_load(render_shipped(template).read_text())
    listener = cfg["static_resources"]["listeners"][0]
    fusion = json.loads(fusion_filter(cfg)["configuration"]["value"])
    limits = fusion["limits"]
    # 32 MiB requests: Envoy's buffer and the filter's fusion limit agree.
    assert listener["per_connection_buffer_limit_bytes"] == limits["max_request_bytes"] == 32 << 20
    # Every cluster the filter calls has breakers for workers x runs x panel.
    want = SIZED_FOR_WORKERS[template.name] * limits.get("max_concurrent_runs", 256) * limits["max_panel"]
    clusters = {c["name"]: c for c in cfg["static_resources"]["clusters"]}
    for up in fusion["upstreams"].values():
        [t] = clusters[up["cluster"]]["circuit_breakers"]["thresholds"]
        assert (t["max_connections"], t["max_pending_requests"], t["max_requests"]) == (want, want, want), up
    # Envoy's own replies in the API's shape: the same mappers everywhere.
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    assert hcm["local_reply_config"] == shipped_hcm(ENVOY_DIR / "demo.yaml")["local_reply_config"]
    # The metric labels.
    assert [t["tag_name"] for t in cfg["stats_config"]["stats_tags"]] == ["mode", "outcome", "reason", "budget"]


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
    # The configured prices apply per call; the self-hosted model has none.
    costs = {m["model"]: m.get("cost") for m in report["panel"]}
    assert costs["openai/gpt-4.1"] > 0 and costs["anthropic/claude-sonnet-4-5"] > 0
    assert costs["vllm/meta-llama/Llama-3.1-8B-Instruct"] is None

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


# ---------------------------------------------------------------- Istio manifests
#
# Field by field against the Istio APIs (istio.io/api: extensions/v1alpha1/wasm.proto,
# networking/v1 service_entry, destination_rule, gateway, virtual_service, and
# networking/v1alpha3 envoy_filter): names, enums and the rules the CRDs enforce.

WASM_TYPE = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
STRING_VALUE = "type.googleapis.com/google.protobuf.StringValue"
C_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

WASMPLUGIN_SPEC = {"selector", "targetRef", "targetRefs", "url", "sha256", "imagePullPolicy",
                   "imagePullSecret", "verificationKey", "pluginConfig", "pluginName", "phase",
                   "priority", "failStrategy", "vmConfig", "match", "type"}
WASMPLUGIN_ENUMS = {
    "imagePullPolicy": {"UNSPECIFIED_POLICY", "IfNotPresent", "Always"},
    "phase": {"UNSPECIFIED_PHASE", "AUTHN", "AUTHZ", "STATS"},
    "failStrategy": {"FAIL_CLOSE", "FAIL_OPEN", "FAIL_RELOAD"},
    "type": {"UNSPECIFIED_PLUGIN_TYPE", "HTTP", "NETWORK"},
}
WORKLOAD_MODES = {"UNDEFINED", "CLIENT", "SERVER", "CLIENT_AND_SERVER"}
TLS_MODES = {"DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL"}
PORT_PROTOCOLS = {"HTTP", "HTTPS", "GRPC", "HTTP2", "MONGO", "TCP", "TLS"}


def unknown(where: str, obj: dict, allowed: set) -> list[str]:
    return [f"{where}.{k}: unknown field" for k in obj if k not in allowed]


def check_wasmplugin(doc: dict) -> list[str]:
    errs = []
    if doc.get("apiVersion") != "extensions.istio.io/v1alpha1":
        errs.append("apiVersion: must be extensions.istio.io/v1alpha1")
    spec = doc.get("spec") or {}
    errs += unknown("spec", spec, WASMPLUGIN_SPEC)
    url = spec.get("url", "")
    if not url:
        errs.append("spec.url: required")
    elif "://" in url and url.split("://")[0] not in {"oci", "http", "https", "file"}:
        errs.append("spec.url: scheme must be one of oci, http, https, file")
    if "sha256" in spec and not re.fullmatch(r"(|[a-f0-9]{64})", spec["sha256"]):
        errs.append("spec.sha256: must be 64 lowercase hex digits")
    for field, values in WASMPLUGIN_ENUMS.items():
        if field in spec and spec[field] not in values:
            errs.append(f"spec.{field}: {spec[field]!r} is not one of {sorted(values)}")
    if sum(k in spec for k in ("selector", "targetRef", "targetRefs")) > 1:
        errs.append("spec: only one of targetRefs or selector can be set")
    if "selector" in spec:
        errs += unknown("spec.selector", spec["selector"], {"matchLabels"})
    for i, ref in enumerate(spec.get("targetRefs", [])):
        errs += unknown(f"spec.targetRefs[{i}]", ref, {"group", "kind", "name", "namespace"})
        if not ref.get("kind") or not ref.get("name"):
            errs.append(f"spec.targetRefs[{i}]: kind and name are required")
    if "pluginName" in spec and not 1 <= len(spec["pluginName"]) <= 256:
        errs.append("spec.pluginName: 1 to 256 characters")
    if "pluginConfig" in spec and not isinstance(spec["pluginConfig"], dict):
        errs.append("spec.pluginConfig: must be an object (google.protobuf.Struct)")
    if "priority" in spec and not isinstance(spec["priority"], int):
        errs.append("spec.priority: must be an integer")
    for i, m in enumerate(spec.get("match", [])):
        errs += unknown(f"spec.match[{i}]", m, {"mode", "ports"})
        if m.get("mode", "UNDEFINED") not in WORKLOAD_MODES:
            errs.append(f"spec.match[{i}].mode: {m['mode']!r} is not one of {sorted(WORKLOAD_MODES)}")
        for j, p in enumerate(m.get("ports", [])):
            errs += unknown(f"spec.match[{i}].ports[{j}]", p, {"number"})
    vm = spec.get("vmConfig", {})
    errs += unknown("spec.vmConfig", vm, {"env"})
    names = [e.get("name") for e in vm.get("env", [])]
    if len(names) != len(set(names)):
        errs.append("spec.vmConfig.env: names must be unique")
    for i, e in enumerate(vm.get("env", [])):
        errs += unknown(f"spec.vmConfig.env[{i}]", e, {"name", "value", "valueFrom"})
        if not C_IDENTIFIER.match(e.get("name") or ""):
            errs.append(f"spec.vmConfig.env[{i}].name: must be a C identifier")
        if e.get("valueFrom", "INLINE") not in {"INLINE", "HOST"}:
            errs.append(f"spec.vmConfig.env[{i}].valueFrom: must be INLINE or HOST")
        if e.get("valueFrom") == "HOST" and "value" in e:
            errs.append(f"spec.vmConfig.env[{i}]: value may only be set when valueFrom is INLINE")
    return errs


def check_service_entry(doc: dict) -> list[str]:
    spec = doc.get("spec") or {}
    errs = unknown("spec", spec, {"hosts", "addresses", "ports", "location", "resolution", "endpoints",
                                  "workloadSelector", "exportTo", "subjectAltNames"})
    if not spec.get("hosts"):
        errs.append("spec.hosts: required")
    if spec.get("location", "MESH_EXTERNAL") not in {"MESH_EXTERNAL", "MESH_INTERNAL"}:
        errs.append("spec.location: bad value")
    if spec.get("resolution", "NONE") not in {"NONE", "STATIC", "DNS", "DNS_ROUND_ROBIN"}:
        errs.append("spec.resolution: bad value")
    for i, p in enumerate(spec.get("ports", [])):
        errs += unknown(f"spec.ports[{i}]", p, {"number", "protocol", "name", "targetPort"})
        if not isinstance(p.get("number"), int) or not p.get("name"):
            errs.append(f"spec.ports[{i}]: number and name are required")
        if p.get("protocol", "TCP") not in PORT_PROTOCOLS:
            errs.append(f"spec.ports[{i}].protocol: bad value")
    return errs


def check_tls(where: str, tls: dict) -> list[str]:
    errs = unknown(where, tls, {"mode", "clientCertificate", "privateKey", "caCertificates", "credentialName",
                                "subjectAltNames", "sni", "insecureSkipVerify", "caCrl"})
    if tls.get("mode", "DISABLE") not in TLS_MODES:
        errs.append(f"{where}.mode: bad value")
    return errs


def check_destination_rule(doc: dict) -> list[str]:
    spec = doc.get("spec") or {}
    errs = unknown("spec", spec, {"host", "trafficPolicy", "subsets", "exportTo", "workloadSelector"})
    if not spec.get("host"):
        errs.append("spec.host: required")
    tp = spec.get("trafficPolicy", {})
    errs += unknown("spec.trafficPolicy", tp, {"loadBalancer", "connectionPool", "outlierDetection", "tls",
                                                "portLevelSettings", "tunnel", "proxyProtocol", "retryBudget"})
    if "tls" in tp:
        errs += check_tls("spec.trafficPolicy.tls", tp["tls"])
    for i, pls in enumerate(tp.get("portLevelSettings", [])):
        errs += unknown(f"spec.trafficPolicy.portLevelSettings[{i}]", pls,
                        {"port", "loadBalancer", "connectionPool", "outlierDetection", "tls"})
        errs += unknown(f"spec.trafficPolicy.portLevelSettings[{i}].port", pls.get("port", {}), {"number"})
        if "tls" in pls:
            errs += check_tls(f"spec.trafficPolicy.portLevelSettings[{i}].tls", pls["tls"])
    return errs


def check_gateway(doc: dict) -> list[str]:
    spec = doc.get("spec") or {}
    errs = unknown("spec", spec, {"servers", "selector"})
    for i, s in enumerate(spec.get("servers", [])):
        errs += unknown(f"spec.servers[{i}]", s, {"port", "bind", "hosts", "tls", "name", "defaultEndpoint"})
        errs += unknown(f"spec.servers[{i}].port", s.get("port", {}), {"number", "protocol", "name", "targetPort"})
        if not s.get("hosts"):
            errs.append(f"spec.servers[{i}].hosts: required")
        if "tls" in s:
            errs += check_tls(f"spec.servers[{i}].tls", s["tls"])
    return errs


def check_virtual_service(doc: dict) -> list[str]:
    spec = doc.get("spec") or {}
    errs = unknown("spec", spec, {"hosts", "gateways", "http", "tls", "tcp", "exportTo"})
    for i, r in enumerate(spec.get("http", [])):
        errs += unknown(f"spec.http[{i}]", r, {"name", "match", "route", "redirect", "directResponse", "delegate",
                                                "rewrite", "timeout", "retries", "fault", "mirror", "mirrors",
                                                "mirrorPercentage", "corsPolicy", "headers"})
        errs += unknown(f"spec.http[{i}].rewrite", r.get("rewrite", {}), {"uri", "authority", "uriRegexRewrite"})
        for j, d in enumerate(r.get("route", [])):
            errs += unknown(f"spec.http[{i}].route[{j}]", d, {"destination", "weight", "headers"})
            errs += unknown(f"spec.http[{i}].route[{j}].destination", d.get("destination", {}),
                            {"host", "subset", "port"})
    return errs


def check_envoy_filter(doc: dict) -> list[str]:
    if doc.get("apiVersion") != "networking.istio.io/v1alpha3":
        return ["apiVersion: must be networking.istio.io/v1alpha3"]
    spec = doc.get("spec") or {}
    errs = unknown("spec", spec, {"workloadSelector", "targetRefs", "configPatches", "priority"})
    errs += unknown("spec.workloadSelector", spec.get("workloadSelector", {}), {"labels"})
    apply_to = {"INVALID", "LISTENER", "FILTER_CHAIN", "NETWORK_FILTER", "HTTP_FILTER", "ROUTE_CONFIGURATION",
                "VIRTUAL_HOST", "HTTP_ROUTE", "CLUSTER", "EXTENSION_CONFIG", "BOOTSTRAP", "LISTENER_FILTER"}
    operations = {"INVALID", "MERGE", "ADD", "REMOVE", "INSERT_BEFORE", "INSERT_AFTER", "INSERT_FIRST", "REPLACE"}
    for i, p in enumerate(spec.get("configPatches", [])):
        errs += unknown(f"spec.configPatches[{i}]", p, {"applyTo", "match", "patch"})
        if p.get("applyTo") not in apply_to:
            errs.append(f"spec.configPatches[{i}].applyTo: bad value")
        errs += unknown(f"spec.configPatches[{i}].match", p.get("match", {}),
                        {"context", "proxy", "listener", "routeConfiguration", "cluster"})
        if p.get("match", {}).get("context", "ANY") not in {"ANY", "SIDECAR_INBOUND", "SIDECAR_OUTBOUND", "GATEWAY"}:
            errs.append(f"spec.configPatches[{i}].match.context: bad value")
        errs += unknown(f"spec.configPatches[{i}].patch", p.get("patch", {}), {"operation", "value", "filterClass"})
        if p.get("patch", {}).get("operation") not in operations:
            errs.append(f"spec.configPatches[{i}].patch.operation: bad value")
        if p.get("applyTo") == "EXTENSION_CONFIG" and p.get("patch", {}).get("operation") != "ADD":
            errs.append(f"spec.configPatches[{i}]: Istio applies only ADD to EXTENSION_CONFIG")
    return errs


CHECKS = {"WasmPlugin": check_wasmplugin, "ServiceEntry": check_service_entry,
          "DestinationRule": check_destination_rule, "Gateway": check_gateway,
          "VirtualService": check_virtual_service, "EnvoyFilter": check_envoy_filter}


def istio_docs() -> list[dict]:
    docs = []
    for path in sorted(ISTIO_DIR.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def one(kind: str, docs: list[dict] | None = None) -> dict:
    [doc] = [d for d in (docs or istio_docs()) if d["kind"] == kind]
    return doc


def check(doc: dict) -> list[str]:
    errs = []
    if not doc.get("metadata", {}).get("name"):
        errs.append("metadata.name: required")
    if doc["kind"] != "WasmPlugin" and doc["kind"] != "EnvoyFilter" and doc.get("apiVersion") not in {
            "networking.istio.io/v1", "networking.istio.io/v1beta1"}:
        errs.append("apiVersion: networking.istio.io/v1 expected")
    return errs + CHECKS[doc["kind"]](doc)


def test_istio_manifests_follow_the_istio_apis():
    docs = istio_docs()
    assert sorted({d["kind"] for d in docs}) == sorted(CHECKS), [d["kind"] for d in docs]
    for doc in docs:
        assert check(doc) == [], f"{doc['kind']}/{doc['metadata']['name']}"


@pytest.mark.parametrize("mutate, expected", [
    (lambda s: s.update(failStrategy="FAIL_RELOADED"), "spec.failStrategy"),
    (lambda s: s.update(phase="ROUTING"), "spec.phase"),
    (lambda s: s.update(pluginconfig={}), "spec.pluginconfig: unknown field"),
    (lambda s: s.update(targetRefs=[{"kind": "Gateway", "name": "gw"}]), "only one of targetRefs or selector"),
    (lambda s: s["vmConfig"]["env"][0].update(value="sk-inline"), "value may only be set when valueFrom is INLINE"),
    (lambda s: s["vmConfig"]["env"][0].update(name="OPENAI-KEY"), "must be a C identifier"),
    (lambda s: s["match"][0].update(mode="INBOUND"), "spec.match[0].mode"),
    (lambda s: s.update(url="ftp://registry/fusion"), "spec.url: scheme"),
    (lambda s: s.update(sha256="sha256:abc"), "spec.sha256"),
])
def test_wasmplugin_check_rejects_what_istio_rejects(mutate, expected):
    doc = copy.deepcopy(one("WasmPlugin"))
    mutate(doc["spec"])
    assert any(expected in e for e in check(doc)), check(doc)


def test_istio_wasmplugin_choices():
    spec = one("WasmPlugin")["spec"]
    assert spec["url"].startswith("oci://")
    assert spec["failStrategy"] == "FAIL_RELOAD"
    # After Istio's authn and authz filters: rejected requests never spend provider keys.
    assert spec["phase"] == "STATS"
    # A gateway's listeners are CLIENT in Istio's terms; SERVER would never match them.
    assert [m["mode"] for m in spec["match"]] == ["CLIENT"]
    assert spec["selector"]["matchLabels"] == {"istio": "ingressgateway"}
    # Every key the configuration names comes from the gateway's environment, and only those.
    host_env = sorted(e["name"] for e in spec["vmConfig"]["env"] if e.get("valueFrom") == "HOST")
    auth_env = sorted(u["auth"]["env"] for u in spec["pluginConfig"]["upstreams"].values() if "env" in u.get("auth", {}))
    assert host_env == auth_env == ["ANTHROPIC_API_KEY", "OPENAI_API_KEY"]
    assert not any("value" in e for e in spec["vmConfig"]["env"])


def test_istio_manifests_agree_with_each_other():
    docs = istio_docs()
    entries = {h: d["spec"] for d in docs if d["kind"] == "ServiceEntry" for h in d["spec"]["hosts"]}
    rules = {d["spec"]["host"]: d["spec"] for d in docs if d["kind"] == "DestinationRule"}
    plugin = one("WasmPlugin", docs)["spec"]["pluginConfig"]
    # Each upstream's cluster is Istio's name for a ServiceEntry port that speaks HTTP,
    # with TLS originated by a DestinationRule (SNI and SAN of the provider).
    for name, up in plugin["upstreams"].items():
        m = re.fullmatch(r"outbound\|(\d+)\|\|(.+)", up["cluster"])
        assert m, up["cluster"]
        port, host = int(m.group(1)), m.group(2)
        assert up["authority"] == host
        [p] = [p for p in entries[host]["ports"] if p["number"] == port]
        assert p["protocol"] == "HTTP"
        assert entries[host]["location"] == "MESH_EXTERNAL" and entries[host]["resolution"] == "DNS"
        [pls] = [s for s in rules[host]["trafficPolicy"]["portLevelSettings"] if s["port"]["number"] == port]
        assert pls["tls"] == {"mode": "SIMPLE", "sni": host, "subjectAltNames": [host]}
    # The gateway routes clients to those same hosts: Messages to Anthropic, the rest to OpenAI.
    vs = one("VirtualService", docs)["spec"]
    assert vs["gateways"] == [one("Gateway", docs)["metadata"]["name"]]
    routes = [(r.get("match", [{}])[0].get("uri", {}).get("prefix", "/"),
               r["route"][0]["destination"]["host"], r["rewrite"]["authority"]) for r in vs["http"]]
    assert routes == [("/v1/messages", "api.anthropic.com", "api.anthropic.com"),
                      ("/", "api.openai.com", "api.openai.com")]
    # envoyfilter.yaml deploys the same image, keys and configuration.
    ef = {p["applyTo"]: p for p in one("EnvoyFilter", docs)["spec"]["configPatches"]}
    wasm = ef["EXTENSION_CONFIG"]["patch"]["value"]
    cfg = wasm["typed_config"]["config"]
    assert wasm["typed_config"]["@type"] == WASM_TYPE
    assert json.loads(cfg["configuration"]["value"]) == plugin
    assert cfg["configuration"]["@type"] == STRING_VALUE
    assert cfg["vm_config"]["code"]["remote"]["http_uri"]["uri"] == one("WasmPlugin", docs)["spec"]["url"]
    assert cfg["vm_config"]["environment_variables"]["host_env_keys"] == ["OPENAI_API_KEY", "ANTHROPIC_API_KEY"]
    assert cfg["allow_on_headers_stop_iteration"] is True and cfg["failure_policy"] == "FAIL_RELOAD"
    assert cfg["root_id"] == one("WasmPlugin", docs)["spec"]["pluginName"]
    http = ef["HTTP_FILTER"]
    assert http["match"]["context"] == "GATEWAY"
    assert http["match"]["listener"]["filterChain"]["filter"]["subFilter"]["name"] == "envoy.filters.http.router"
    assert http["patch"]["operation"] == "INSERT_BEFORE"
    assert http["patch"]["value"]["name"] == wasm["name"]
    assert http["patch"]["value"]["config_discovery"]["type_urls"] == [WASM_TYPE]


# ---------------------------------------------------------------- Istio configs, run
#
# What the ingress gateway's Envoy gets from these manifests, built the way istiod
# builds it (pilot/pkg/model/extensions.go): the plugin named <namespace>.<name>, root_id
# from pluginName, the pluginConfig as a JSON StringValue, vmConfig.env HOST entries as
# host_env_keys, failStrategy as failure_policy, and no allow_on_headers_stop_iteration
# (the WasmPlugin API has no field for it); clusters outbound|<port>||<host> (here on the
# mock); routes from the VirtualService.


def istio_wasm_from_wasmplugin(doc: dict) -> dict:
    spec = doc["spec"]
    host_env = [e["name"] for e in spec.get("vmConfig", {}).get("env", []) if e.get("valueFrom") == "HOST"]
    inline = {e["name"]: e.get("value", "") for e in spec.get("vmConfig", {}).get("env", [])
              if e.get("valueFrom", "INLINE") == "INLINE"}
    env = {"host_env_keys": host_env}
    if inline:
        env["key_values"] = inline
    config = {
        "name": f"{doc['metadata']['namespace']}.{doc['metadata']['name']}",
        "root_id": spec.get("pluginName", ""),
        "vm_config": {"runtime": "envoy.wasm.runtime.v8", "code": {"local": {"filename": str(WASM)}},
                      "environment_variables": env},
        "configuration": {"@type": STRING_VALUE, "value": json.dumps(spec["pluginConfig"])},
        "failure_policy": {"FAIL_OPEN": "FAIL_OPEN", "FAIL_CLOSE": "FAIL_CLOSED",
                           "FAIL_RELOAD": "FAIL_RELOAD"}[spec.get("failStrategy", "FAIL_CLOSE")],
    }
    return {"@type": WASM_TYPE, "config": config}


def istio_wasm_from_envoyfilter(doc: dict) -> dict:
    """The EXTENSION_CONFIG value after istio-agent replaced the oci:// code by the file."""
    ext = next(p for p in doc["spec"]["configPatches"] if p["applyTo"] == "EXTENSION_CONFIG")
    typed = copy.deepcopy(ext["patch"]["value"]["typed_config"])
    typed["config"]["vm_config"]["code"] = {"local": {"filename": str(WASM)}}
    return typed


def merge(into: dict, patch: dict) -> None:
    """Istio's MERGE: protobuf merge semantics on the JSON form (maps merge, lists append)."""
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            merge(into[key], value)
        elif isinstance(value, list) and isinstance(into.get(key), list):
            into[key] = into[key] + value
        else:
            into[key] = copy.deepcopy(value)


def istio_gateway_template(wasm: dict, mock_port: int, name: str, envoyfilter_merges: bool = False) -> Path:
    """envoyfilter_merges: also apply the EnvoyFilter's LISTENER and NETWORK_FILTER MERGE
    patches (buffer limit, local_reply_config) as istiod does on the gateway's listener."""
    docs = istio_docs()
    vs = one("VirtualService", docs)["spec"]
    routes = []
    for r in vs["http"]:
        d = r["route"][0]["destination"]
        prefix = r.get("match", [{}])[0].get("uri", {}).get("prefix", "/")
        routes.append({"match": {"prefix": prefix},
                       "route": {"cluster": f"outbound|{d['port']['number']}||{d['host']}",
                                 "host_rewrite_literal": r["rewrite"]["authority"], "timeout": r["timeout"]}})
    clusters = [loopback_cluster(f"outbound|{p['number']}||{h}", mock_port)
                for d in docs if d["kind"] == "ServiceEntry" for h in d["spec"]["hosts"] for p in d["spec"]["ports"]]
    cfg = {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": "ADMIN_PORT"}}},
        "static_resources": {
            "listeners": [{
                "name": "gateway",
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": "LISTEN_PORT"}},
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": "gateway",
                        "route_config": {"virtual_hosts": [{"name": "llm", "domains": ["*"], "routes": routes}]},
                        "http_filters": [
                            {"name": "fusion", "typed_config": wasm},
                            {"name": "envoy.filters.http.router", "typed_config": {
                                "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}},
                        ]}}]}]}],
            "clusters": clusters}}
    if envoyfilter_merges:
        listener = cfg["static_resources"]["listeners"][0]
        for patch in one("EnvoyFilter", docs)["spec"]["configPatches"]:
            if patch["applyTo"] == "LISTENER":
                merge(listener, patch["patch"]["value"])
            elif patch["applyTo"] == "NETWORK_FILTER":
                hcm = listener["filter_chains"][0]["filters"][0]
                assert patch["match"]["listener"]["filterChain"]["filter"]["name"] == hcm["name"]
                merge(hcm, patch["patch"]["value"])
    text = yaml.safe_dump(cfg, sort_keys=False)
    for key in ("ADMIN_PORT", "LISTEN_PORT"):
        text = text.replace(f"port_value: {key}", "port_value: {{" + key + "}}")
    RUN_DIR.mkdir(exist_ok=True)
    path = RUN_DIR / f"{name}-template.yaml"
    path.write_text(text)
    return path


def start_istio_gateway(mock, wasm: dict, name: str, env: dict | None = None,
                        envoyfilter_merges: bool = False) -> Envoy:
    template = istio_gateway_template(wasm, mock.port, name, envoyfilter_merges)
    return Envoy(mock, template=template, name=name, env=FAKE_KEYS if env is None else env,
                 log_level="trace", extra_args=QUIET_HEADER_DUMPS)


def test_wasmplugin_config_is_accepted_by_the_filter(mock):
    """The WasmPlugin's pluginConfig, as Istio hands it over, configures the filter."""
    e = start_istio_gateway(mock, istio_wasm_from_wasmplugin(one("WasmPlugin")), "istio-wasmplugin")
    try:
        log = e.log_text()
        assert "fusion: configured" in log and "panel=3" in log, log[-3000:]
        assert "invalid fusion configuration" not in log
        assert_no_key_in(log)
    finally:
        e.stop()


def test_wasmplugin_without_stop_iteration_holds_llm_requests(mock):
    """Documents the WasmPlugin limitation (deploy/istio/README.md): Istio cannot set
    allow_on_headers_stop_iteration, so Envoy never delivers the body of a request the
    filter paused on, and the request hangs; nothing reaches the provider."""
    e = start_istio_gateway(mock, istio_wasm_from_wasmplugin(one("WasmPlugin")), "istio-wasmplugin-hold")
    try:
        for body in (ask(), {"model": "gpt-4.1", "messages": [{"role": "user", "content": "hi"}]}):
            with pytest.raises(httpx.ReadTimeout):
                e.post(CHAT, body, timeout=2)
        assert mock.calls() == []
        # A request the filter does not pause on (not a JSON POST to an API path) passes.
        r = httpx.get(f"{e.url}/v1/models", timeout=10)
        assert r.status_code == 200 and mock.calls()[0]["path"] == "/v1/models"
    finally:
        e.stop()


@pytest.mark.parametrize("field, value, reason", [
    ("aliasez", ["fusion"], "`aliasez`: unknown field"),
    ("routes", [{"prefix": "openai/", "strip_prefix": True, "upstream": "openai"}],
     "no route serves model `anthropic/claude-sonnet-4-5`"),
])
def test_wasmplugin_bad_plugin_config_stops_envoy_with_the_reason(mock, field, value, reason):
    doc = copy.deepcopy(one("WasmPlugin"))
    doc["spec"]["pluginConfig"][field] = value
    with pytest.raises(RuntimeError) as failed:
        start_istio_gateway(mock, istio_wasm_from_wasmplugin(doc), "istio-bad")
    assert "Envoy exited" in str(failed.value), str(failed.value)
    log = (RUN_DIR / "istio-bad.log").read_text()
    assert "invalid fusion configuration" in log and reason in log, log[-3000:]
    assert "Unable to create Wasm plugin istio-system.fusion" in log, log[-3000:]


def test_wasmplugin_missing_host_key_stops_envoy_naming_it(mock):
    env = {**FAKE_KEYS}
    del env["ANTHROPIC_API_KEY"]
    with pytest.raises(RuntimeError) as failed:
        start_istio_gateway(mock, istio_wasm_from_wasmplugin(one("WasmPlugin")), "istio-nokey",
                            env={**env, "ANTHROPIC_API_KEY": ""})
    assert "Envoy exited" in str(failed.value), str(failed.value)
    log = (RUN_DIR / "istio-nokey.log").read_text()
    assert "environment variable `ANTHROPIC_API_KEY` is not set" in log, log[-3000:]


def test_envoyfilter_config_runs_fusion_through_the_gateway(mock):
    e = start_istio_gateway(mock, istio_wasm_from_envoyfilter(one("EnvoyFilter")), "istio-envoyfilter",
                            envoyfilter_merges=True)
    try:
        r = e.post(CHAT, ask())
        assert r.status_code == 200, r.text
        report = r.json()["fusion"]
        assert [m["status"] for m in report["panel"]] == ["ok", "ok", "ok"]
        by_model = calls_by_model(mock)
        assert sorted(by_model) == sorted(["gpt-4.1", "claude-sonnet-4-5", "claude-haiku-4-5", "gpt-4.1-mini"])
        for c in by_model["gpt-4.1"] + by_model["gpt-4.1-mini"]:
            assert c["headers"]["authorization"] == f"Bearer {FAKE_KEYS['OPENAI_API_KEY']}"
            assert c["headers"]["host"] == "api.openai.com"
        for c in by_model["claude-sonnet-4-5"] + by_model["claude-haiku-4-5"]:
            assert c["headers"]["x-api-key"] == FAKE_KEYS["ANTHROPIC_API_KEY"]
            assert c["headers"]["host"] == "api.anthropic.com" and c["path"] == "/v1/messages"

        # Streaming: the VirtualService's cluster outbound|443||api.openai.com serves the
        # outer model, so the final answer streams up the route.
        mock.reset()
        r = e.post(CHAT, ask(stream=True))
        assert r.status_code == 200 and r.text.rstrip().endswith("data: [DONE]"), r.text[-500:]
        [outer] = [c for c in mock.calls() if c["body"].get("stream")]
        assert outer["model"] == "gpt-4.1"
        assert outer["headers"]["authorization"] == f"Bearer {FAKE_KEYS['OPENAI_API_KEY']}"

        # Not fusion: passes through with the client's own key.
        mock.reset()
        r = e.post(MESSAGES, {"model": "claude-haiku-4-5", "max_tokens": 64,
                              "messages": [{"role": "user", "content": "hi"}]},
                   headers={"x-api-key": "client-own-key"})
        assert r.status_code == 200, r.text
        [call] = mock.calls()
        assert call["headers"]["x-api-key"] == "client-own-key" and call["headers"]["host"] == "api.anthropic.com"

        # The MERGE patches: a 3 MB request passes the 32 MiB buffer; Envoy's own 503 comes
        # back in the API's error shape.
        mock.reset()
        big = {"model": "gpt-4.1", "messages": [{"role": "user", "content": "x" * (3 << 20)}]}
        assert e.post(CHAT, big, timeout=120).status_code == 200
        mock.script({"gpt-4.1": "reset"})
        r = e.post(CHAT, {"model": "gpt-4.1", "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 503, r.text
        assert set(r.json()["error"]) == {"message", "type", "param", "code"}, r.text
        assert_no_key_in(e.log_text())
        # The NETWORK_FILTER MERGE appended the stats access loggers: durations in seconds.
        assert_duration_recorded(e, runs=2)
    finally:
        e.stop()


# ---------------------------------------------------------------- make oci

OCI_SCRIPT = ROOT / "scripts" / "oci.py"


def build_oci(wasm: Path, out: Path, tag: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(OCI_SCRIPT), "--wasm", str(wasm), "--out", str(out), "--tag", tag],
                          capture_output=True, text=True, timeout=60)


def blob(layout: Path, digest: str) -> bytes:
    algo, hexdigest = digest.split(":")
    assert algo == "sha256"
    data = (layout / "blobs" / "sha256" / hexdigest).read_bytes()
    assert hashlib.sha256(data).hexdigest() == hexdigest, f"blob {digest} does not match its digest"
    return data


def read_layout(layout: Path, tag: str) -> dict:
    """Reads an image layout the way istio-agent reads a compat image: the last layer must
    be tar+gzip and hold plugin.wasm. Checks every digest and size on the way."""
    assert json.loads((layout / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((layout / "index.json").read_text())
    assert index["schemaVersion"] == 2
    # mediaType is optional in index.json (skopeo leaves it out); when present, it is the index's.
    assert index.get("mediaType", "application/vnd.oci.image.index.v1+json") == "application/vnd.oci.image.index.v1+json"
    [desc] = index["manifests"]
    assert desc["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert desc["annotations"]["org.opencontainers.image.ref.name"] == tag
    raw = blob(layout, desc["digest"])
    assert len(raw) == desc["size"]
    manifest = json.loads(raw)
    assert manifest["schemaVersion"] == 2 and manifest["mediaType"] == desc["mediaType"]
    assert manifest["annotations"]["module.wasm.image/variant"] == "compat"
    assert manifest["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"
    config_raw = blob(layout, manifest["config"]["digest"])
    assert len(config_raw) == manifest["config"]["size"]
    config = json.loads(config_raw)
    [layer] = manifest["layers"]
    assert layer["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
    compressed = blob(layout, layer["digest"])
    assert len(compressed) == layer["size"]
    tar_bytes = gzip.decompress(compressed)
    assert config["rootfs"] == {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(tar_bytes).hexdigest()]}
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        members = tar.getmembers()
        assert [(m.name, m.isfile()) for m in members] == [("plugin.wasm", True)]
        plugin = tar.extractfile(members[0]).read()
    referenced = {d.split(":")[1] for d in (desc["digest"], manifest["config"]["digest"], layer["digest"])}
    assert {p.name for p in (layout / "blobs" / "sha256").iterdir()} == referenced, "stray blobs"
    return {"manifest_digest": desc["digest"], "plugin": plugin, "layer_digest": layer["digest"], "config": config}


def test_oci_layout_holds_exactly_the_module(tmp_path):
    wasm = tmp_path / "fake.wasm"
    wasm.write_bytes(b"\0asm\x01\0\0\0" + secrets.token_bytes(4096))
    out = build_oci(wasm, tmp_path / "oci", "t1")
    assert out.returncode == 0, out.stderr
    image = read_layout(tmp_path / "oci", "t1")
    assert image["plugin"] == wasm.read_bytes()
    assert (image["config"]["architecture"], image["config"]["os"]) == ("wasm", "wasip1")
    # The digest to pin in the WasmPlugin / EnvoyFilter is printed and written beside.
    assert image["manifest_digest"] in out.stdout
    assert (tmp_path / "oci.digest").read_text().strip() == image["manifest_digest"]
    # Reproducible: the same module gives the same image, byte for byte.
    again = build_oci(wasm, tmp_path / "again", "t1")
    assert again.returncode == 0, again.stderr
    assert read_layout(tmp_path / "again", "t1")["manifest_digest"] == image["manifest_digest"]
    # Rebuilding over an existing layout replaces it (no stale blobs), a different module
    # gives a different image.
    wasm.write_bytes(b"\0asm\x01\0\0\0" + secrets.token_bytes(4096))
    assert build_oci(wasm, tmp_path / "oci", "t1").returncode == 0
    assert read_layout(tmp_path / "oci", "t1")["manifest_digest"] != image["manifest_digest"]


def test_oci_refuses_what_is_not_wasm_and_what_is_not_a_layout(tmp_path):
    bad = tmp_path / "bad.wasm"
    bad.write_bytes(b"#!/bin/sh\n")
    out = build_oci(bad, tmp_path / "oci", "t1")
    assert out.returncode != 0 and "not a Wasm module" in out.stderr + out.stdout
    good = tmp_path / "good.wasm"
    good.write_bytes(b"\0asm\x01\0\0\0")
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "file").write_text("keep")
    out = build_oci(good, tmp_path / "precious", "t1")
    assert out.returncode != 0 and "not an OCI image layout" in out.stderr + out.stdout
    assert (tmp_path / "precious" / "file").read_text() == "keep"


def test_oci_image_of_the_filter_goes_through_a_registry_unchanged(tmp_path):
    """dist/fusion.wasm packaged, read by skopeo, pushed to a local registry (CNCF
    distribution) and pulled back: same manifest digest (the one to pin in Istio), same module."""
    out = build_oci(WASM, tmp_path / "oci", "0.0.0-test")
    assert out.returncode == 0, out.stderr
    image = read_layout(tmp_path / "oci", "0.0.0-test")
    assert image["plugin"] == WASM.read_bytes()
    inspect = subprocess.run(["skopeo", "inspect", f"oci:{tmp_path / 'oci'}:0.0.0-test"],
                             capture_output=True, text=True, timeout=60)
    assert inspect.returncode == 0, inspect.stderr
    assert json.loads(inspect.stdout)["Digest"] == image["manifest_digest"]

    port = free_port()
    (tmp_path / "registry.yml").write_text(
        f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {tmp_path / 'registry'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n")
    registry = subprocess.Popen(["timeout", "300", "docker-registry", "serve", str(tmp_path / "registry.yml")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v2/", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert registry.poll() is None, "docker-registry exited"
            time.sleep(0.1)
        ref = f"docker://127.0.0.1:{port}/fusion-wasm:0.0.0-test"
        push = subprocess.run(["skopeo", "copy", "--dest-tls-verify=false",
                               f"oci:{tmp_path / 'oci'}:0.0.0-test", ref],
                              capture_output=True, text=True, timeout=120)
        assert push.returncode == 0, push.stderr
        raw = subprocess.run(["skopeo", "inspect", "--tls-verify=false", "--raw", ref],
                             capture_output=True, timeout=60)
        assert raw.returncode == 0, raw.stderr
        assert "sha256:" + hashlib.sha256(raw.stdout).hexdigest() == image["manifest_digest"]
        pull = subprocess.run(["skopeo", "copy", "--src-tls-verify=false", ref,
                               f"oci:{tmp_path / 'pulled'}:0.0.0-test"],
                              capture_output=True, text=True, timeout=120)
        assert pull.returncode == 0, pull.stderr
        assert read_layout(tmp_path / "pulled", "0.0.0-test")["plugin"] == WASM.read_bytes()
    finally:
        registry.terminate()
        registry.wait(timeout=10)


# ---------------------------------------------------------------- Envoy Gateway manifests
#
# Field by field against the types they use (envoyproxy/gateway api/v1alpha1: EnvoyProxy,
# ClientTrafficPolicy, BackendTrafficPolicy, Backend, EnvoyPatchPolicy,
# EnvoyExtensionPolicy and its Wasm type; Gateway API v1: GatewayClass, Gateway,
# HTTPRoute, BackendTLSPolicy), then the Envoy configuration Envoy Gateway generates from
# them, with the EnvoyPatchPolicy applied, run in a real Envoy against the mock.

EG_DIR = ROOT / "deploy" / "envoy-gateway"
EG_API = "gateway.envoyproxy.io/v1alpha1"
GW_API = "gateway.networking.k8s.io/v1"
EG_KINDS = {
    "Namespace": "v1", "EnvoyProxy": EG_API, "GatewayClass": GW_API, "Gateway": GW_API,
    "ClientTrafficPolicy": EG_API, "HTTPRoute": GW_API, "BackendTrafficPolicy": EG_API,
    "Backend": EG_API, "BackendTLSPolicy": GW_API, "EnvoyPatchPolicy": EG_API, "EnvoyExtensionPolicy": EG_API,
}
POLICY_TARGETS = {"targetRef", "targetRefs", "targetSelectors"}
EG_RESOURCE_TYPES = {f"type.googleapis.com/envoy.{t}" for t in (
    "config.listener.v3.Listener", "config.route.v3.RouteConfiguration", "config.cluster.v3.Cluster",
    "config.endpoint.v3.ClusterLoadAssignment", "extensions.transport_sockets.tls.v3.Secret")}


def eg_docs() -> list[dict]:
    docs = []
    for path in sorted(EG_DIR.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def eg_one(kind: str, docs: list[dict] | None = None) -> dict:
    [doc] = [d for d in (docs or eg_docs()) if d["kind"] == kind]
    return doc


def refs(where: str, items: list, allowed: set, required: set) -> list[str]:
    errs = []
    for i, r in enumerate(items):
        errs += unknown(f"{where}[{i}]", r, allowed)
        errs += [f"{where}[{i}].{k}: required" for k in sorted(required) if not r.get(k)]
    return errs


def check_envoy_proxy(spec: dict) -> list[str]:
    errs = unknown("spec", spec, {"provider", "logging", "bootstrap", "concurrency", "telemetry", "shutdown",
                                  "mergeGateways", "extraArgs", "routingType", "ipFamily", "backendTLS",
                                  "filterOrder", "preserveRouteOrder", "luaValidation"})
    provider = spec.get("provider", {})
    errs += unknown("spec.provider", provider, {"type", "kubernetes", "host"})
    if provider.get("type") not in {"Kubernetes", "Host"}:
        errs.append("spec.provider.type: Kubernetes or Host")
    k8s = provider.get("kubernetes", {})
    errs += unknown("spec.provider.kubernetes", k8s, {"envoyDeployment", "envoyDaemonSet", "envoyService",
                                                      "envoyHpa", "envoyPDB", "useListenerPortAsContainerPort"})
    dep = k8s.get("envoyDeployment", {})
    errs += unknown("spec.provider.kubernetes.envoyDeployment", dep,
                    {"replicas", "strategy", "pod", "container", "initContainers", "patch", "name"})
    container = dep.get("container", {})
    errs += unknown("...envoyDeployment.container", container,
                    {"env", "resources", "securityContext", "image", "imageRepository", "volumeMounts"})
    for i, e in enumerate(container.get("env", [])):
        errs += unknown(f"...container.env[{i}]", e, {"name", "value", "valueFrom"})
        if "value" in e and "valueFrom" in e:
            errs.append(f"...container.env[{i}]: value and valueFrom are exclusive")
        errs += unknown(f"...container.env[{i}].valueFrom", e.get("valueFrom", {}),
                        {"secretKeyRef", "configMapKeyRef", "fieldRef", "resourceFieldRef"})
    for i, m in enumerate(container.get("volumeMounts", [])):
        errs += unknown(f"...container.volumeMounts[{i}]", m, {"name", "mountPath", "readOnly", "subPath"})
    pod = dep.get("pod", {})
    errs += unknown("...envoyDeployment.pod", pod, {"annotations", "labels", "securityContext", "affinity",
                                                    "tolerations", "volumes", "imagePullSecrets", "nodeSelector",
                                                    "topologySpreadConstraints"})
    mounts = {m["name"] for m in container.get("volumeMounts", [])}
    if mounts != {v["name"] for v in pod.get("volumes", [])}:
        errs.append("...: every volumeMount needs a pod volume of its name")
    boot = spec.get("bootstrap", {})
    errs += unknown("spec.bootstrap", boot, {"type", "value", "jsonPatches"})
    if boot and boot.get("type", "Replace") not in {"Merge", "Replace", "JSONPatch"}:
        errs.append("spec.bootstrap.type: Merge, Replace or JSONPatch")
    if boot.get("type") in {"Merge", "Replace"} and not isinstance(boot.get("value"), str):
        errs.append("spec.bootstrap.value: a YAML string")
    return errs


def check_gateway_api(kind: str, spec: dict) -> list[str]:
    if kind == "GatewayClass":
        errs = unknown("spec", spec, {"controllerName", "parametersRef", "description"})
        errs += unknown("spec.parametersRef", spec.get("parametersRef", {}), {"group", "kind", "name", "namespace"})
        if spec.get("controllerName") != "gateway.envoyproxy.io/gatewayclass-controller":
            errs.append("spec.controllerName: Envoy Gateway's is gateway.envoyproxy.io/gatewayclass-controller")
        return errs
    if kind == "Gateway":
        errs = unknown("spec", spec, {"gatewayClassName", "listeners", "addresses", "infrastructure",
                                      "backendTLS", "allowedListeners"})
        for i, listener in enumerate(spec.get("listeners", [])):
            errs += unknown(f"spec.listeners[{i}]", listener,
                            {"name", "hostname", "port", "protocol", "tls", "allowedRoutes"})
            if listener.get("protocol") not in {"HTTP", "HTTPS", "TLS", "TCP", "UDP"}:
                errs.append(f"spec.listeners[{i}].protocol: bad value")
            tls = listener.get("tls", {})
            errs += unknown(f"spec.listeners[{i}].tls", tls, {"mode", "certificateRefs", "options",
                                                               "frontendValidation"})
            if listener.get("protocol") == "HTTPS" and (tls.get("mode", "Terminate") != "Terminate"
                                                         or not tls.get("certificateRefs")):
                errs.append(f"spec.listeners[{i}].tls: HTTPS terminates with a certificate")
        return errs
    if kind == "HTTPRoute":
        errs = unknown("spec", spec, {"parentRefs", "hostnames", "rules"})
        errs += refs("spec.parentRefs", spec.get("parentRefs", []),
                     {"group", "kind", "namespace", "name", "sectionName", "port"}, {"name"})
        for i, rule in enumerate(spec.get("rules", [])):
            errs += unknown(f"spec.rules[{i}]", rule, {"name", "matches", "filters", "backendRefs", "timeouts",
                                                       "retry", "sessionPersistence"})
            for j, m in enumerate(rule.get("matches", [])):
                errs += unknown(f"spec.rules[{i}].matches[{j}]", m, {"path", "headers", "queryParams", "method"})
                if m.get("path", {}).get("type", "PathPrefix") not in {"Exact", "PathPrefix", "RegularExpression"}:
                    errs.append(f"spec.rules[{i}].matches[{j}].path.type: bad value")
            for j, f in enumerate(rule.get("filters", [])):
                if f.get("type") not in {"RequestHeaderModifier", "ResponseHeaderModifier", "RequestMirror",
                                         "RequestRedirect", "URLRewrite", "ExtensionRef", "CORS"}:
                    errs.append(f"spec.rules[{i}].filters[{j}].type: bad value")
                errs += unknown(f"spec.rules[{i}].filters[{j}].urlRewrite", f.get("urlRewrite", {}),
                                {"hostname", "path"})
            errs += refs(f"spec.rules[{i}].backendRefs", rule.get("backendRefs", []),
                         {"group", "kind", "name", "namespace", "port", "weight", "filters"}, {"name"})
            errs += unknown(f"spec.rules[{i}].timeouts", rule.get("timeouts", {}), {"request", "backendRequest"})
        return errs
    if kind == "BackendTLSPolicy":
        errs = unknown("spec", spec, {"targetRefs", "validation", "options"})
        errs += refs("spec.targetRefs", spec.get("targetRefs", []), {"group", "kind", "name", "sectionName"},
                     {"kind", "name"})
        v = spec.get("validation", {})
        errs += unknown("spec.validation", v, {"caCertificateRefs", "wellKnownCACertificates", "hostname",
                                                "subjectAltNames"})
        if not v.get("hostname"):
            errs.append("spec.validation.hostname: required")
        if bool(v.get("caCertificateRefs")) == bool(v.get("wellKnownCACertificates")):
            errs.append("spec.validation: exactly one of caCertificateRefs and wellKnownCACertificates")
        if v.get("wellKnownCACertificates", "System") != "System":
            errs.append("spec.validation.wellKnownCACertificates: System")
        return errs
    return [f"{kind}: not a Gateway API kind"]


def check_eg_policy(kind: str, spec: dict) -> list[str]:
    if kind == "ClientTrafficPolicy":
        errs = unknown("spec", spec, POLICY_TARGETS | {
            "tcpKeepalive", "enableProxyProtocol", "proxyProtocol", "clientIPDetection", "tls", "path", "headers",
            "timeout", "connection", "http1", "http2", "http3", "healthCheck", "clientValidation"})
        conn = spec.get("connection", {})
        errs += unknown("spec.connection", conn, {"connectionLimit", "bufferLimit", "socketBufferLimit",
                                                  "maxAcceptPerSocketEvent"})
        if "bufferLimit" in conn and not re.fullmatch(r"\d+(Ki|Mi|Gi)?", str(conn["bufferLimit"])):
            errs.append("spec.connection.bufferLimit: a Kubernetes quantity")
    elif kind == "BackendTrafficPolicy":
        errs = unknown("spec", spec, POLICY_TARGETS | {
            "loadBalancer", "retry", "proxyProtocol", "tcpKeepalive", "healthCheck", "circuitBreaker", "timeout",
            "connection", "dns", "http2", "faultInjection", "rateLimit", "useClientProtocol", "compression",
            "responseOverride", "requestBuffer", "telemetry", "mergeType"})
        errs += unknown("spec.circuitBreaker", spec.get("circuitBreaker", {}), {
            "maxConnections", "maxPendingRequests", "maxParallelRequests", "maxParallelRetries",
            "maxRequestsPerConnection", "perEndpoint"})
    elif kind == "Backend":
        errs = unknown("spec", spec, {"type", "endpoints", "appProtocols", "fallback", "tls"})
        for i, e in enumerate(spec.get("endpoints", [])):
            errs += unknown(f"spec.endpoints[{i}]", e, {"fqdn", "ip", "unix", "hostname", "zone"})
            if sum(k in e for k in ("fqdn", "ip", "unix")) != 1:
                errs.append(f"spec.endpoints[{i}]: exactly one of fqdn, ip, unix")
            errs += unknown(f"spec.endpoints[{i}].fqdn", e.get("fqdn", {}), {"hostname", "port"})
    elif kind == "EnvoyPatchPolicy":
        errs = unknown("spec", spec, {"type", "jsonPatches", "targetRef", "priority"})
        if spec.get("type") != "JSONPatch":
            errs.append("spec.type: JSONPatch")
        errs += unknown("spec.targetRef", spec.get("targetRef", {}), {"group", "kind", "name"})
        for i, p in enumerate(spec.get("jsonPatches", [])):
            errs += unknown(f"spec.jsonPatches[{i}]", p, {"type", "name", "operation"})
            if p.get("type") not in EG_RESOURCE_TYPES:
                errs.append(f"spec.jsonPatches[{i}].type: bad value")
            op = p.get("operation", {})
            errs += unknown(f"spec.jsonPatches[{i}].operation", op, {"op", "path", "from", "value", "jsonPath"})
            if op.get("op") not in {"add", "remove", "replace", "move", "copy", "test"}:
                errs.append(f"spec.jsonPatches[{i}].operation.op: bad value")
    elif kind == "EnvoyExtensionPolicy":
        errs = unknown("spec", spec, POLICY_TARGETS | {"wasm", "extProc", "lua"})
        for i, w in enumerate(spec.get("wasm", [])):
            errs += unknown(f"spec.wasm[{i}]", w, {"name", "rootID", "code", "config", "failOpen", "env"})
            code = w.get("code", {})
            errs += unknown(f"spec.wasm[{i}].code", code, {"type", "http", "image", "pullPolicy"})
            if code.get("type") not in {"HTTP", "Image"} or (code.get("type") == "Image") != ("image" in code):
                errs.append(f"spec.wasm[{i}].code: type Image with image, or HTTP with http")
            errs += unknown(f"spec.wasm[{i}].code.image", code.get("image", {}), {"url", "sha256", "pullSecretRef"})
            if not re.fullmatch(r"[a-f0-9]{64}", code.get("image", {}).get("sha256", "0" * 64)):
                errs.append(f"spec.wasm[{i}].code.image.sha256: 64 lowercase hex digits")
            errs += unknown(f"spec.wasm[{i}].env", w.get("env", {}), {"hostKeys"})
    else:
        return [f"{kind}: not an Envoy Gateway policy kind"]
    if kind != "Backend" and kind != "EnvoyPatchPolicy" and not POLICY_TARGETS & set(spec):
        errs.append("spec: a target is required")
    return errs


def check_eg(doc: dict) -> list[str]:
    kind = doc["kind"]
    errs = [] if doc.get("metadata", {}).get("name") else ["metadata.name: required"]
    if doc.get("apiVersion") != EG_KINDS.get(kind):
        errs.append(f"apiVersion: {EG_KINDS.get(kind)} expected")
    if kind == "Namespace":
        return errs
    if kind not in ("GatewayClass",) and doc["metadata"].get("namespace") != "llm-gateway":
        errs.append("metadata.namespace: llm-gateway (the Gateway's: policies only apply in it)")
    spec = doc.get("spec") or {}
    if kind == "EnvoyProxy":
        return errs + check_envoy_proxy(spec)
    if doc["apiVersion"] == GW_API:
        return errs + check_gateway_api(kind, spec)
    return errs + check_eg_policy(kind, spec)


def test_envoy_gateway_manifests_follow_the_apis():
    docs = eg_docs()
    assert sorted({d["kind"] for d in docs}) == sorted(EG_KINDS), [d["kind"] for d in docs]
    for doc in docs:
        assert check_eg(doc) == [], f"{doc['kind']}/{doc['metadata']['name']}"


@pytest.mark.parametrize("kind, mutate, expected", [
    ("EnvoyPatchPolicy", lambda s: s.update(type="MergePatch"), "spec.type"),
    ("EnvoyPatchPolicy", lambda s: s["jsonPatches"][0].update(type="Listener"), "jsonPatches[0].type"),
    ("EnvoyPatchPolicy", lambda s: s["jsonPatches"][0]["operation"].update(op="insert"), "operation.op"),
    ("EnvoyExtensionPolicy", lambda s: s["wasm"][0].update(allowOnHeadersStopIteration=True),
     "spec.wasm[0].allowOnHeadersStopIteration: unknown field"),
    ("EnvoyExtensionPolicy", lambda s: s["wasm"][0]["code"].update(type="HTTP"), "spec.wasm[0].code"),
    ("Backend", lambda s: s["endpoints"][0].update(ip={"address": "1.2.3.4", "port": 443}), "exactly one of"),
    ("BackendTLSPolicy", lambda s: s["validation"].update(caCertificateRefs=[{"name": "ca"}]), "exactly one of"),
    ("ClientTrafficPolicy", lambda s: s["connection"].update(bufferLimit="32MB"), "bufferLimit"),
    ("HTTPRoute", lambda s: s["rules"][0]["filters"][0].update(type="HostRewrite"), "filters[0].type"),
    ("Gateway", lambda s: s["listeners"][0]["tls"].update(mode="Passthrough"), "HTTPS terminates"),
    ("EnvoyProxy", lambda s: s["bootstrap"].update(type="Patch"), "spec.bootstrap.type"),
])
def test_envoy_gateway_check_rejects_what_the_apis_reject(kind, mutate, expected):
    doc = copy.deepcopy(next(d for d in eg_docs() if d["kind"] == kind))
    mutate(doc["spec"])
    assert any(expected in e for e in check_eg(doc)), check_eg(doc)


def eg_patch_policy_filter(docs: list[dict] | None = None) -> dict:
    [patch] = [p for p in eg_one("EnvoyPatchPolicy", docs)["spec"]["jsonPatches"]
               if p["operation"]["path"].endswith("/http_filters/0")]
    return patch["operation"]["value"]


def test_envoy_gateway_manifests_agree_with_each_other():
    docs = eg_docs()
    gw = eg_one("Gateway", docs)
    ns = gw["metadata"]["namespace"]
    [listener] = gw["spec"]["listeners"]
    route = eg_one("HTTPRoute", docs)
    assert route["spec"]["parentRefs"] == [{"name": gw["metadata"]["name"], "sectionName": listener["name"]}]
    backends = {d["metadata"]["name"]: d["spec"] for d in docs if d["kind"] == "Backend"}
    tls = {d["spec"]["targetRefs"][0]["name"]: d["spec"] for d in docs if d["kind"] == "BackendTLSPolicy"}
    # Each rule's cluster is named httproute/<ns>/<route>/rule/<i>; the filter's upstreams
    # use exactly those names, for the Backend whose host is the upstream's authority.
    rule_hosts = {}
    for i, rule in enumerate(route["spec"]["rules"]):
        [ref] = rule["backendRefs"]
        assert (ref["group"], ref["kind"]) == ("gateway.envoyproxy.io", "Backend")
        [endpoint] = backends[ref["name"]]["endpoints"]
        host = endpoint["fqdn"]["hostname"]
        assert ref["port"] == endpoint["fqdn"]["port"] == 443
        assert tls[ref["name"]]["validation"] == {"hostname": host, "wellKnownCACertificates": "System"}
        assert rule["filters"] == [{"type": "URLRewrite", "urlRewrite": {"hostname": host}}]
        rule_hosts[f"httproute/{ns}/{route['metadata']['name']}/rule/{i}"] = host
    wasm = eg_patch_policy_filter(docs)
    cfg = wasm["typed_config"]["config"]
    fusion = json.loads(cfg["configuration"]["value"])
    for up in fusion["upstreams"].values():
        assert rule_hosts[up["cluster"]] == up["authority"], up
    # The patch targets the listener Envoy Gateway generates for the Gateway's listener.
    epp = eg_one("EnvoyPatchPolicy", docs)["spec"]
    assert epp["targetRef"] == {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": gw["metadata"]["name"]}
    assert {p["name"] for p in epp["jsonPatches"]} == {f"{ns}/{gw['metadata']['name']}/{listener['name']}"}
    assert cfg["allow_on_headers_stop_iteration"] is True and cfg["failure_policy"] == "FAIL_RELOAD"
    # Keys: the EnvoyProxy's env, the filter's host_env_keys and the configuration's auth agree.
    proxy = eg_one("EnvoyProxy", docs)["spec"]["provider"]["kubernetes"]["envoyDeployment"]
    env = sorted(e["name"] for e in proxy["container"]["env"])
    auth_env = sorted(u["auth"]["env"] for u in fusion["upstreams"].values() if "env" in u.get("auth", {}))
    assert env == sorted(cfg["vm_config"]["environment_variables"]["host_env_keys"]) == auth_env
    assert not any("value" in e for e in proxy["container"]["env"]), "keys come from a Secret"
    # The module's path is the EnvoyProxy's mount.
    [mount] = proxy["container"]["volumeMounts"]
    assert cfg["vm_config"]["code"]["local"]["filename"].startswith(mount["mountPath"] + "/")
    # The GatewayClass uses this EnvoyProxy.
    ref = eg_one("GatewayClass", docs)["spec"]["parametersRef"]
    assert (ref["kind"], ref["name"], ref["namespace"]) == ("EnvoyProxy", "fusion", ns)
    # The EnvoyExtensionPolicy form carries the same configuration (a subset of its fields).
    eep = eg_one("EnvoyExtensionPolicy", docs)["spec"]["wasm"][0]
    for key, value in eep["config"].items():
        assert fusion[key] == value, key
    assert eep["env"]["hostKeys"] == cfg["vm_config"]["environment_variables"]["host_env_keys"]
    # Circuit breakers: 4 workers x max_concurrent_runs (default 256) x max_panel.
    breaker = eg_one("BackendTrafficPolicy", docs)["spec"]["circuitBreaker"]
    want = 4 * fusion["limits"].get("max_concurrent_runs", 256) * fusion["limits"]["max_panel"]
    assert breaker == {"maxConnections": want, "maxPendingRequests": want, "maxParallelRequests": want}
    # Envoy's own errors get the same mappers as the demo.
    [lrc] = [p["operation"]["value"] for p in epp["jsonPatches"] if p["operation"]["path"].endswith("local_reply_config")]
    assert lrc == shipped_hcm(ENVOY_DIR / "demo.yaml")["local_reply_config"]
    # The stats tags are the demo's.
    boot = yaml.safe_load(eg_one("EnvoyProxy", docs)["spec"]["bootstrap"]["value"])
    assert boot["stats_config"] == yaml.safe_load(render_shipped(ENVOY_DIR / "demo.yaml").read_text())["stats_config"]


def shipped_hcm(template: Path) -> dict:
    cfg = yaml.safe_load(render_shipped(template).read_text())
    return cfg["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]


def test_plugin_names_are_distinct_across_the_forms_of_each_platform():
    """Before Envoy 1.40 one cached plugin serves two filter configurations that differ only
    in allow_on_headers_stop_iteration, and the first one's flag wins: the forms that set
    the flag have names of their own."""
    istio = istio_docs()
    wasmplugin_name = f"{one('WasmPlugin', istio)['metadata']['namespace']}.{one('WasmPlugin', istio)['metadata']['name']}"
    ef = {p["applyTo"]: p for p in one("EnvoyFilter", istio)["spec"]["configPatches"]}
    ef_name = ef["EXTENSION_CONFIG"]["patch"]["value"]["typed_config"]["config"]["name"]
    eg_names = [eg_patch_policy_filter()["typed_config"]["config"]["name"],
                eg_one("EnvoyExtensionPolicy")["spec"]["wasm"][0]["name"]]
    names = [wasmplugin_name, ef_name, *eg_names, "fusion"]
    assert len(set(names)) == len(names), names


def json_pointer_add(doc, path: str, value) -> None:
    """RFC 6902 `add` (what Envoy Gateway applies): inserts into arrays, sets in objects."""
    parts = [p.replace("~1", "/").replace("~0", "~") for p in path.lstrip("/").split("/")]
    target = doc
    for part in parts[:-1]:
        target = target[int(part)] if isinstance(target, list) else target[part]
    last = parts[-1]
    if isinstance(target, list):
        target.insert(len(target) if last == "-" else int(last), copy.deepcopy(value))
    else:
        assert last not in target or path.endswith("local_reply_config"), f"add over an existing {path}"
        target[last] = copy.deepcopy(value)


def quantity(text: str) -> int:
    m = re.fullmatch(r"(\d+)(Ki|Mi|Gi)?", text)
    return int(m.group(1)) * {None: 1, "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30}[m.group(2)]


def envoy_gateway_template(mock_port: int, name: str) -> Path:
    """The listener and clusters Envoy Gateway generates from the manifests (names,
    filter chain, routes, breakers, buffer limit; downstream TLS left out), with the
    EnvoyPatchPolicy's JSON patches applied to the listener."""
    docs = eg_docs()
    gw = eg_one("Gateway", docs)
    ns, gw_name = gw["metadata"]["namespace"], gw["metadata"]["name"]
    [listener] = gw["spec"]["listeners"]
    listener_name = f"{ns}/{gw_name}/{listener['name']}"
    route = eg_one("HTTPRoute", docs)
    breaker = eg_one("BackendTrafficPolicy", docs)["spec"]["circuitBreaker"]
    routes, clusters = [], []
    for i, rule in enumerate(route["spec"]["rules"]):
        cluster = f"httproute/{ns}/{route['metadata']['name']}/rule/{i}"
        [match] = rule["matches"]
        routes.append({"name": f"{cluster}/match/0/llm_example_com", "match": {"prefix": match["path"]["value"]},
                       "route": {"cluster": cluster, "host_rewrite_literal": rule["filters"][0]["urlRewrite"]["hostname"],
                                 "timeout": rule["timeouts"]["request"]}})
        c = loopback_cluster(cluster, mock_port)
        c["circuit_breakers"] = {"thresholds": [{
            "max_connections": breaker["maxConnections"], "max_pending_requests": breaker["maxPendingRequests"],
            "max_requests": breaker["maxParallelRequests"]}]}
        clusters.append(c)
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "https-443",
        "route_config": {"name": listener_name, "virtual_hosts": [
            {"name": f"{listener_name}/llm_example_com", "domains": [listener["hostname"]], "routes": routes}]},
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}],
        # Envoy Gateway's default access log (to stdout) that the EnvoyPatchPolicy appends to.
        "access_log": [{"name": "envoy.access_loggers.file", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
            "path": "/dev/stdout"}}],
    }
    buffer = quantity(eg_one("ClientTrafficPolicy", docs)["spec"]["connection"]["bufferLimit"])
    generated = {
        "name": listener_name,
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": "LISTEN_PORT"}},
        "per_connection_buffer_limit_bytes": buffer,
        "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
                                        "typed_config": hcm}]}],
    }
    for patch in eg_one("EnvoyPatchPolicy", docs)["spec"]["jsonPatches"]:
        assert patch["name"] == listener_name and patch["operation"]["op"] == "add"
        json_pointer_add(generated, patch["operation"]["path"], patch["operation"]["value"])
    http_filters = generated["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"]
    wasm = http_filters[0]["typed_config"]["config"]
    wasm["vm_config"]["code"] = {"local": {"filename": str(WASM)}}
    cfg = {"admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": "ADMIN_PORT"}}},
           "static_resources": {"listeners": [generated], "clusters": clusters}}
    text = yaml.safe_dump(cfg, sort_keys=False)
    for key in ("ADMIN_PORT", "LISTEN_PORT"):
        text = text.replace(f"port_value: {key}", "port_value: {{" + key + "}}")
    RUN_DIR.mkdir(exist_ok=True)
    path = RUN_DIR / f"{name}-template.yaml"
    path.write_text(text)
    return path


def test_envoy_patch_policy_config_runs_fusion_through_the_gateway(mock):
    e = Envoy(mock, template=envoy_gateway_template(mock.port, "envoy-gateway"), name="envoy-gateway",
              env=FAKE_KEYS, log_level="trace", extra_args=QUIET_HEADER_DUMPS)
    host = {"host": "llm.example.com"}
    try:
        log = e.log_text()
        assert "fusion: configured" in log and "panel=3" in log, log[-3000:]
        r = e.post(CHAT, ask(), headers=host)
        assert r.status_code == 200, r.text
        assert [m["status"] for m in r.json()["fusion"]["panel"]] == ["ok", "ok", "ok"]
        by_model = calls_by_model(mock)
        assert sorted(by_model) == sorted(["gpt-4.1", "claude-sonnet-4-5", "claude-haiku-4-5", "gpt-4.1-mini"])
        for c in by_model["gpt-4.1"] + by_model["gpt-4.1-mini"]:
            assert c["headers"]["authorization"] == f"Bearer {FAKE_KEYS['OPENAI_API_KEY']}"
            assert c["headers"]["host"] == "api.openai.com"
        for c in by_model["claude-sonnet-4-5"] + by_model["claude-haiku-4-5"]:
            assert c["headers"]["x-api-key"] == FAKE_KEYS["ANTHROPIC_API_KEY"]
            assert c["headers"]["host"] == "api.anthropic.com" and c["path"] == "/v1/messages"

        # Not fusion: up the route with the client's own key.
        mock.reset()
        r = e.post(MESSAGES, {"model": "claude-haiku-4-5", "max_tokens": 64,
                              "messages": [{"role": "user", "content": "hi"}]},
                   headers={**host, "x-api-key": "client-own-key"})
        assert r.status_code == 200, r.text
        [call] = mock.calls()
        assert call["headers"]["x-api-key"] == "client-own-key" and call["headers"]["host"] == "api.anthropic.com"

        # Envoy's own 503 on the route, in the Messages error shape (the second patch).
        mock.reset()
        mock.script({"claude-haiku-4-5": "reset"})
        r = e.post(MESSAGES, {"model": "claude-haiku-4-5", "max_tokens": 64,
                              "messages": [{"role": "user", "content": "hi"}]}, headers=host)
        assert r.status_code == 503, r.text
        assert r.json()["type"] == "error" and r.json()["error"]["type"] == "api_error", r.text
        assert_no_key_in(e.log_text())
        # The third patch: the fusion run's duration in seconds (Envoy 1.37 or later).
        assert_duration_recorded(e, runs=1)
    finally:
        e.stop()


def assert_duration_recorded(e, runs: int) -> None:
    """The shipped stats access loggers recorded `runs` fusion runs (mode alias, outcome ok)
    in the seconds histogram, whose name and labels need no stats_tags."""
    if not has_stats_access_logger():
        return  # Envoy 1.36: no stats access logger, the configs go without it
    pattern = r'^fusion_run_duration_seconds_count\{mode="alias",outcome="ok"\} (\d+)$'
    deadline = time.time() + 15
    while not ((m := re.search(pattern, e.stats(), re.M)) and int(m.group(1)) >= runs):
        assert time.time() < deadline, "no duration histogram after 15 s"
        time.sleep(0.5)
    assert int(m.group(1)) == runs


def test_oci_image_is_tagged_and_annotated_with_the_crate_version(tmp_path):
    """`make oci` (no --tag) tags the image with Cargo.toml's version, so operators pin,
    upgrade and roll back by version; the manifest names that version whatever the tag."""
    version = re.search(r'(?ms)^\[package\].*?^version\s*=\s*"([^"]+)"', (ROOT / "Cargo.toml").read_text()).group(1)
    wasm = tmp_path / "fake.wasm"
    wasm.write_bytes(b"\0asm\x01\0\0\0")
    out = subprocess.run([sys.executable, str(OCI_SCRIPT), "--wasm", str(wasm), "--out", str(tmp_path / "oci")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert f"(tag {version})" in out.stdout
    image = read_layout(tmp_path / "oci", version)
    manifest = json.loads(blob(tmp_path / "oci", image["manifest_digest"]))
    assert manifest["annotations"]["org.opencontainers.image.version"] == version
    assert manifest["annotations"]["org.opencontainers.image.licenses"] == "Apache-2.0"
    # The CHANGELOG has an entry for the version being built.
    assert re.search(rf"^## \[{re.escape(version)}\]", (ROOT / "CHANGELOG.md").read_text(), re.M)
    assert (ROOT / "LICENSE").read_text().lstrip().startswith("Apache License")
