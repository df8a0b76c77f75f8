"""Issue: operators' integration, through the real Envoy with the shipped demo config.

Big requests (3 MB passes, fusion or not; past the 32 MiB buffer limit a 413 in the API's
shape); Envoy's own replies on the LLM paths in the client API's error shape, the
filter's own replies unchanged; circuit breakers sized for the filter's callouts; the
Prometheus output checked by promtool; every provider configuration of
docs/providers.md run against the mock."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time

import httpx
import pytest
import yaml

from harness import ROOT, Envoy, demo_fusion_config, has_stats_access_logger

MiB = 1 << 20
PATHS = {"chat": "/v1/chat/completions", "responses": "/v1/responses", "messages": "/v1/messages"}
APIS = list(PATHS)
# The demo's listener buffer and the filter's fusion limit (envoy/demo.yaml).
BUFFER_LIMIT = 32 * MiB
# Envoy workers in the tests and in `make run` (harness.Envoy, scripts/run.sh).
WORKERS = 2


def request(api: str, model: str, text: str, **extra) -> dict:
    if api == "responses":
        body = {"model": model, "input": text}
    else:
        body = {"model": model, "messages": [{"role": "user", "content": text}]}
        if api == "messages":
            body["max_tokens"] = 256
    body.update(extra)
    return body


def native_error(api: str, r: httpx.Response) -> dict:
    """The error object of the API's own error shape (and nothing else)."""
    assert r.headers["content-type"].startswith("application/json"), (r.headers, r.text[:300])
    body = r.json()
    if api == "messages":
        assert body["type"] == "error" and set(body) == {"type", "error"}, body
        assert set(body["error"]) == {"type", "message"}, body
        assert isinstance(body["error"]["message"], str) and body["error"]["message"], body
        return body["error"]
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"], body
    return body["error"]


# ---------------------------------------------------------------- big requests


def big_text(size: int) -> str:
    # Words, so the mock and the translators see ordinary text, not one giant token.
    words = "the quick brown fox jumps over the lazy dog "
    return (words * (size // len(words) + 1))[:size]


@pytest.mark.parametrize("api", APIS)
def test_3mb_request_that_is_not_fusion_passes_untouched(envoy, mock, api):
    body = json.dumps(request(api, "gpt-plain", big_text(3 * MiB))).encode()
    assert len(body) > 3 * MiB
    r = envoy.post(PATHS[api], body, timeout=120)
    assert r.status_code == 200, r.text[:300]
    [call] = mock.calls()
    assert call["path"] == PATHS[api] and call["model"] == "gpt-plain"
    assert int(call["headers"]["content-length"]) == len(body)
    assert call["body"] == json.loads(body)
    assert "x-fusion-depth" not in call["headers"]


@pytest.mark.parametrize("api", APIS)
def test_3mb_fusion_request_is_served(envoy, mock, api):
    text = big_text(3 * MiB)
    r = envoy.post(PATHS[api], request(api, "fusion", text), timeout=120)
    assert r.status_code == 200, r.text[:300]
    report = r.json()["fusion"]
    assert [m["status"] for m in report["panel"]] == ["ok", "ok", "ok"], report
    members = [c for c in mock.calls() if c["model"] in ("mock-a", "mock-b", "mock-c")]
    assert len(members) == 3
    for call in members:
        # Every member got the whole 3 MB question.
        assert text in json.dumps(call["body"]), "a member did not get the whole question"


@pytest.mark.parametrize("model", ["gpt-plain", "fusion"])
@pytest.mark.parametrize("api", APIS)
def test_past_the_buffer_limit_is_413_in_the_api_shape(envoy, mock, api, model):
    body = json.dumps(request(api, model, big_text(BUFFER_LIMIT + MiB))).encode()
    try:
        r = envoy.post(PATHS[api], body, timeout=120)
    except httpx.RemoteProtocolError:
        pytest.fail("Envoy closed the connection instead of answering 413")
    assert r.status_code == 413, r.text[:300]
    err = native_error(api, r)
    assert err["type"] == ("request_too_large" if api == "messages" else "invalid_request_error"), err
    assert "Payload Too Large" in err["message"], err
    if api != "messages":
        assert err["code"] == "request_payload_too_large", err
    assert mock.calls() == []


# ---------------------------------------------------------------- Envoy's own replies


@pytest.mark.parametrize("api", APIS)
def test_unreachable_upstream_is_503_in_the_api_shape(envoy, mock, api):
    mock.script({"gpt-plain": "reset"})
    r = envoy.post(PATHS[api], request(api, "gpt-plain", "hi"))
    assert r.status_code == 503, r.text[:300]
    err = native_error(api, r)
    assert err["type"] == ("api_error" if api == "messages" else "server_error"), err
    assert "upstream connect error or disconnect/reset before headers" in err["message"], err
    if api != "messages":
        assert err["code"].startswith("upstream_reset_before_response_started"), err


@pytest.fixture(scope="module")
def short_route(mock):
    """The demo config with a 1 s route timeout."""
    e = Envoy(mock, name="short-route",
              transform=lambda text: text.replace("route: {cluster: mock, timeout: 130s}",
                                                  "route: {cluster: mock, timeout: 1s}"))
    yield e
    e.stop()


@pytest.mark.parametrize("api", APIS)
def test_route_timeout_is_504_in_the_api_shape(short_route, mock, api):
    mock.script({"gpt-plain": "hang"})
    r = short_route.post(PATHS[api], request(api, "gpt-plain", "hi"), timeout=30)
    assert r.status_code == 504, r.text[:300]
    err = native_error(api, r)
    assert "upstream request timeout" in err["message"], err
    assert err["type"] == ("api_error" if api == "messages" else "server_error"), err
    if api != "messages":
        assert err["code"] == "response_timeout", err


@pytest.mark.parametrize("api", APIS)
def test_the_filters_own_errors_are_kept_as_they_are(envoy, mock, api):
    """A fusion request the filter refuses: its own native 400, not rewritten by Envoy."""
    body = request(api, "fusion", "hi")
    body["messages" if api != "responses" else "input"] = []
    r = envoy.post(PATHS[api], body)
    assert r.status_code == 400, r.text[:300]
    err = native_error(api, r)
    assert "Bad Request" not in err["message"] and err["message"] != "", err
    assert err["type"] == "invalid_request_error", err
    if api != "messages":
        assert err.get("code") != "" and "request_payload" not in str(err.get("code")), err
    assert mock.calls() == []


# ---------------------------------------------------------------- circuit breakers


def test_demo_circuit_breakers_fit_the_filters_callouts(envoy):
    """Envoy applies the sized thresholds: workers x max_concurrent_runs x max_panel."""
    limits = demo_fusion_config()["limits"]
    want = WORKERS * limits["max_concurrent_runs"] * limits["max_panel"]
    clusters = httpx.get(f"{envoy.admin}/clusters").text
    for field in ("max_connections", "max_pending_requests", "max_requests"):
        assert f"mock::default_priority::{field}::{want}" in clusters, (field, want)


# ---------------------------------------------------------------- metrics


def promtool(text: str, *args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("promtool")
    assert exe, "promtool is missing: scripts/setup.sh promtool (Debian's prometheus package)"
    return subprocess.run([exe, "check", "metrics", *args], input=text, capture_output=True,
                          text=True, timeout=60)


def fusion_families(text: str) -> str:
    """The fusion_* families of a Prometheus exposition (HELP/TYPE lines and samples)."""
    keep = []
    for line in text.splitlines():
        name = line.split()[2] if line.startswith("#") and len(line.split()) > 2 else line
        if name.startswith("fusion_"):
            keep.append(line)
    return "\n".join(keep) + "\n"


@pytest.fixture
def prometheus_after_a_run(envoy):
    r = envoy.post(PATHS["chat"], request("chat", "fusion", "Why is the sky blue?"))
    assert r.status_code == 200, r.text[:300]
    # Histograms appear after Envoy's stats flush (every 5 s).
    deadline = time.time() + 15
    # Without the stats access logger (Envoy 1.36) there are no duration histograms: the counters then.
    flushed = (r'^fusion_run_duration_seconds_count\{mode="alias",outcome="ok"\} [1-9]' if has_stats_access_logger()
               else r'^fusion_runs_total\{mode="alias",outcome="ok"\} [1-9]')
    while not re.search(flushed, text := envoy.stats(), re.M):
        assert time.time() < deadline, "no run-time histogram after 15 s"
        time.sleep(0.5)
    return text


def lint_problems(out: subprocess.CompletedProcess, prefix: str = "fusion_") -> list[str]:
    """promtool's lint findings for metrics starting with `prefix`, less "no help text":
    Envoy's /stats/prometheus writes no HELP lines for any metric."""
    assert "error while linting" not in out.stderr, out.stderr[-2000:]
    lines = (out.stdout + out.stderr).splitlines()
    return [line for line in lines if line.startswith(prefix) and not line.endswith("no help text")]


def test_prometheus_output_parses_with_labels(prometheus_after_a_run):
    text = prometheus_after_a_run
    # The whole page parses: promtool stops with "error while linting" on a parse error.
    out = promtool(text)
    assert "error while linting" not in out.stderr, out.stderr[-2000:]
    # The filter's families carry labels (the shipped stats_tags), not flat names.
    assert re.search(r'^fusion_runs_total\{mode="alias",outcome="ok"\} [1-9]\d*$', text, re.M), fusion_families(text)
    assert not re.search(r"^fusion_runs_total_mode_", text, re.M)
    assert re.search(r"^# TYPE fusion_runs_total counter$", text, re.M)


def test_every_fusion_family_passes_promtool_lint(prometheus_after_a_run):
    fusion = fusion_families(prometheus_after_a_run)
    # Every family the filter and the shipped configs export, histograms included.
    families = [("fusion_runs_total", "counter"), ("fusion_active_runs", "gauge"),
                ("fusion_cost_micros_total", "counter")]
    if has_stats_access_logger():
        families += [("fusion_run_duration_seconds", "histogram"), ("fusion_panel_wait_seconds", "histogram")]
    for family, kind in families:
        assert f"# TYPE {family} {kind}\n" in fusion, (family, fusion)
    assert lint_problems(promtool(fusion)) == []


def test_durations_are_in_seconds_with_labels_and_the_shipped_buckets(prometheus_after_a_run):
    if not has_stats_access_logger():
        pytest.skip("Envoy before 1.37 has no stats access logger: no duration histograms (docs/observability.md)")
    text = prometheus_after_a_run
    run = r'fusion_run_duration_seconds_{}\{{mode="alias",outcome="ok"\}} (\S+)$'
    count = float(re.search(run.format("count"), text, re.M).group(1))
    total = float(re.search(run.format("sum"), text, re.M).group(1))
    # One run against the local mock: a fraction of a second, not milliseconds (tens or more).
    assert count >= 1 and 0 < total / count < 5, (count, total)
    les = re.findall(r'^fusion_panel_wait_seconds_bucket\{mode="alias",le="([^"]+)"\}', text, re.M)
    assert les == ["0.25", "0.5", "1", "2", "4", "8", "15", "30", "60", "120", "300", "+Inf"], les
    # No Wasm histogram in milliseconds is left.
    assert "milliseconds" not in fusion_families(text)


def shipped_duration_loggers() -> dict[str, list]:
    """The stats access loggers (duration histograms) of every shipped configuration."""
    def hcm_loggers(cfg: dict) -> list:
        hcm = cfg["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
        return [a for a in hcm.get("access_log", []) if a["name"] == "envoy.access_loggers.stats"]

    out = {}
    for name in ("demo.yaml", "providers.yaml"):
        text = re.sub(r"\{\{[A-Z_]+\}\}", "0", (ROOT / "envoy" / name).read_text())  # the placeholders
        out[name] = hcm_loggers(yaml.safe_load(text))
    for doc in yaml.safe_load_all((ROOT / "deploy" / "istio" / "envoyfilter.yaml").read_text()):
        for patch in (doc or {}).get("spec", {}).get("configPatches", []):
            if patch["applyTo"] == "NETWORK_FILTER":
                out["istio envoyfilter.yaml"] = patch["patch"]["value"]["typed_config"].get("access_log", [])
    for doc in yaml.safe_load_all((ROOT / "deploy" / "envoy-gateway" / "envoypatchpolicy.yaml").read_text()):
        if doc and doc["kind"] == "EnvoyPatchPolicy":
            out["envoy-gateway envoypatchpolicy.yaml"] = [
                p["operation"]["value"] for p in doc["spec"]["jsonPatches"]
                if p["operation"]["path"].endswith("/access_log/-")]
    return out


def test_every_shipped_config_records_the_durations_the_same_way():
    loggers = shipped_duration_loggers()
    demo = loggers["demo.yaml"]
    names = [h["stat"]["name"] for lg in demo for h in lg["typed_config"]["histograms"]]
    assert names == ["fusion_run_duration_seconds", "fusion_panel_wait_seconds"], names
    for lg in demo:
        assert lg["typed_config"]["stat_prefix"] == "wasmcustom"
        assert all(h["unit"] == "Percent" for h in lg["typed_config"]["histograms"])
    for where, found in loggers.items():
        assert found == demo, where


# ---------------------------------------------------------------- providers guide

PROVIDERS_DOC = ROOT / "docs" / "providers.md"
TEST_MARK = re.compile(r"<!-- test: (\w+) (.*?) -->\n```json\n(.*?)\n```", re.S)


def provider_examples() -> list:
    out = []
    for name, attrs, block in TEST_MARK.findall(PROVIDERS_DOC.read_text()):
        fields = dict(kv.split("=", 1) for kv in attrs.split())
        out.append(pytest.param(name, fields, json.loads(block), id=name))
    return out


def test_providers_doc_has_a_tested_config_per_provider():
    names = [p.values[0] for p in provider_examples()]
    assert names == ["openai", "azure", "anthropic", "gemini", "openrouter", "vllm", "bedrock"], names


def loopback_clusters(names: set, port: int) -> str:
    out = ""
    for name in sorted(names):
        out += f"""  - name: {name}
    connect_timeout: 1s
    type: STATIC
    load_assignment:
      cluster_name: {name}
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address: {{address: 127.0.0.1, port_value: {port}}}
"""
    return out


@pytest.mark.parametrize("name, fields, example", provider_examples())
def test_provider_config(mock, name, fields, example):
    """The doc's configuration, on clusters pointed at the mock: a fusion request whose
    member, judge and outer model are the provider's model reaches the mock with the
    provider's path (query string included), host, credential and model name."""
    model = fields["model"]
    config = {
        "aliases": ["fusion"],
        "outer_model": model,
        "panel": [{"model": model}],
        "judge": {"model": model},
        "upstreams": example["upstreams"],
        "routes": example["routes"],
    }
    env_var = fields.get("env")
    key = f"sk-test-{name}-0123456789"
    clusters = {u["cluster"] for u in example["upstreams"].values()}
    e = Envoy(mock, name=f"provider-{name}", fusion_config=config,
              extra_clusters=loopback_clusters(clusters, mock.port),
              env={env_var: key} if env_var else None,
              transform=lambda text: add_host_env_keys(text, [env_var] if env_var else []))
    try:
        r = e.post(PATHS["chat"], request("chat", "fusion", "Why is the sky blue?"))
        assert r.status_code == 200, r.text[:500]
        report = r.json()["fusion"]
        assert [m["status"] for m in report["panel"]] == ["ok"], report
        calls = mock.calls()
        assert len(calls) == 3, [c["path"] for c in calls]  # member, judge, outer model
        upstream = next(u for u in example["upstreams"].values()
                        if fields.get("path") is None or u.get("path") == fields["path"])
        for c in calls:
            assert c["path"] == fields.get("path", PATHS[upstream["api"]]), c["path"]
            assert c["headers"]["host"] == fields.get("authority", upstream["authority"])
            assert c["model"] == fields["sent"]
            if env_var:
                header = fields["header"]
                want = f"Bearer {key}" if fields.get("value") == "Bearer" else key
                assert c["headers"][header] == want, c["headers"]
            else:
                assert "authorization" not in c["headers"] and "api-key" not in c["headers"]
        assert key not in e.log_text()
    finally:
        e.stop()


def add_host_env_keys(text: str, keys: list) -> str:
    """Lists the provider's key variable in the demo's vm_config (host_env_keys)."""
    if not keys:
        return text
    return text.replace(
        "                  runtime: envoy.wasm.runtime.v8\n",
        "                  runtime: envoy.wasm.runtime.v8\n"
        f"                  environment_variables: {{host_env_keys: {json.dumps(keys)}}}\n", 1)
