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


def istio_gateway_template(wasm: dict, mock_port: int, name: str) -> Path:
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
    text = yaml.safe_dump(cfg, sort_keys=False)
    for key in ("ADMIN_PORT", "LISTEN_PORT"):
        text = text.replace(f"port_value: {key}", "port_value: {{" + key + "}}")
    RUN_DIR.mkdir(exist_ok=True)
    path = RUN_DIR / f"{name}-template.yaml"
    path.write_text(text)
    return path


def start_istio_gateway(mock, wasm: dict, name: str, env: dict | None = None) -> Envoy:
    template = istio_gateway_template(wasm, mock.port, name)
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
    e = start_istio_gateway(mock, istio_wasm_from_envoyfilter(one("EnvoyFilter")), "istio-envoyfilter")
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
        assert_no_key_in(e.log_text())
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
