"""Issue: operator configuration. Presets, member tools, per-request overrides
bounded by the operator's limits, native YAML (protobuf Struct) configuration, and
invalid configurations rejected by the real Envoy with the field named."""

import copy
import json
import subprocess
import time

import pytest

from harness import ENVOY, RUN_DIR, WASM, DEMO_CONFIG, Envoy, demo_fusion_config, free_port, render

CHAT = "/v1/chat/completions"


def ask(decl, **extra):
    body = {"model": "mock-outer", "messages": [{"role": "user", "content": "Is tea healthy?"}],
            "tools": [decl], "tool_choice": "required"}
    body.update(extra)
    return body


def panel_calls(mock, names=("mock-a", "mock-b", "mock-c")):
    return [c for c in mock.calls() if c["model"] in names]


def test_overrides_reach_each_member_and_the_judge_stays_at_zero(envoy, mock):
    decl = {"type": "fusion", "temperature": 0.3, "top_p": 0.8, "max_completion_tokens": 120,
            "stop": ["END"], "reasoning": "low"}
    r = envoy.post(CHAT, ask(decl))
    assert r.status_code == 200, r.text
    members = panel_calls(mock)
    assert len(members) == 3
    for c in members:
        b = c["body"]
        assert (b["temperature"], b["top_p"], b["max_completion_tokens"], b["stop"], b["reasoning_effort"]) == \
            (0.3, 0.8, 120, ["END"], "low"), b
    judge = next(c for c in mock.calls() if c["model"] == "mock-judge")
    assert judge["body"]["temperature"] == 0


@pytest.mark.parametrize("override,needle", [
    ({"max_completion_tokens": 0}, "must be a positive integer"),
    ({"max_tool_calls": -1}, "must be a positive integer"),
    ({"temperature": 2.5}, "from 0 to 2"),
    ({"top_p": -1}, "from 0 to 1"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "at most 4 strings"),
    ({"reasoning": "extreme"}, "`reasoning`"),
    ({"panel": [f"mock-{i}" for i in range(9)]}, "at most 8 are allowed"),
    ({"preset": "missing"}, "unknown fusion preset `missing`"),
])
def test_overrides_beyond_limits_are_native_400s(envoy, mock, override, needle):
    r = envoy.post(CHAT, ask({"type": "fusion", **override}))
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert needle in err["message"] and err["param"] == "tools" and err["type"] == "invalid_request_error"
    assert mock.calls() == [], "a refused request reaches no model"
    # Anthropic clients get their own shape.
    body = {"model": "mock-outer", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"type": "fusion", **override}], "tool_choice": {"type": "any"}}
    r = envoy.post("/v1/messages", body)
    assert r.status_code == 400 and r.json()["type"] == "error"
    assert needle in r.json()["error"]["message"]


def test_preset_selects_panel_and_quorum(envoy, mock):
    r = envoy.post(CHAT, ask({"type": "fusion", "preset": "fast"}))
    assert r.status_code == 200, r.text
    fusion = r.json()["fusion"]
    assert fusion["preset"] == "fast"
    assert sorted(m["model"] for m in fusion["panel"]) == ["mock-a", "mock-b"]
    assert sorted(c["model"] for c in panel_calls(mock)) == ["mock-a", "mock-b"]


@pytest.fixture(scope="module")
def tooled(mock):
    """Envoy whose panel members (on a Responses upstream, which takes OpenAI's
    built-in tools) get provider tools: one member its own, all the shared ones."""
    config = demo_fusion_config()
    config["upstreams"]["responses"] = {"cluster": "mock", "authority": "mock", "api": "responses"}
    config["routes"] = [{"prefix": m, "upstream": "responses"} for m in ("mock-a", "mock-b", "mock-c")] \
        + config["routes"]
    config["panel"][0]["tools"] = [{"type": "web_search", "search_context_size": "low"}]
    config["member_tools"] = [{"type": "code_interpreter"}]
    e = Envoy(mock, name="tooled", fusion_config=config)
    yield e
    e.stop()


def test_member_tools_are_forwarded(tooled, mock):
    r = tooled.post(CHAT, {"model": "fusion", "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200, r.text
    tools = {c["model"]: [t["type"] for t in c["body"].get("tools", [])] for c in panel_calls(mock)}
    assert tools == {"mock-a": ["web_search", "code_interpreter"],
                     "mock-b": ["code_interpreter"], "mock-c": ["code_interpreter"]}
    judge = next(c for c in mock.calls() if c["model"] == "mock-judge")
    assert "tools" not in judge["body"], "provider tools are for the panel only"


def to_yaml(value, indent):
    """JSON is YAML: a flow-style block for the Struct configuration."""
    return json.dumps(value, indent=2).replace("\n", "\n" + " " * indent)


def struct_config_template(config):
    """envoy/demo.yaml with the filter configuration as a native google.protobuf.Struct."""
    text = DEMO_CONFIG.read_text()
    lines = text.split("\n")
    start = next(i for i, line in enumerate(lines) if "google.protobuf.StringValue" in line)
    indent = len(lines[start]) - len(lines[start].lstrip())
    end = start + 2
    while end < len(lines) and (len(lines[end]) - len(lines[end].lstrip()) > indent or not lines[end].strip()):
        end += 1
    pad = " " * indent
    block = [f'{pad}"@type": type.googleapis.com/google.protobuf.Struct',
             f"{pad}value: {to_yaml(config, indent + 2)}"]
    out = RUN_DIR / "struct-template.yaml"
    RUN_DIR.mkdir(exist_ok=True)
    out.write_text("\n".join(lines[:start] + block + lines[end:]))
    return out


def test_native_yaml_struct_configuration(mock):
    config = demo_fusion_config()
    config["aliases"] = ["fusion", "team/fusion"]
    config["limits"]["max_panel"] = 4
    e = Envoy(mock, template=struct_config_template(config), name="struct")
    try:
        r = e.post(CHAT, {"model": "team/fusion", "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 200, r.text
        assert r.json()["fusion"]["mode"] == "alias"
        assert "aliases=[\"fusion\", \"team/fusion\"]" in e.log_text()
        # A value only the Struct carried is in force: a fifth panel member is over max_panel.
        decl = {"type": "fusion", "panel": ["mock-a", "mock-b", "mock-c", "mock-a", "mock-b"]}
        r = e.post(CHAT, {"model": "mock-outer", "messages": [{"role": "user", "content": "hi"}], "tools": [decl]})
        assert r.status_code == 400, r.text
        assert "at most 4 are allowed" in r.json()["error"]["message"], r.text
    finally:
        e.stop()


def valid():
    return demo_fusion_config()


def with_(path, value, base=None):
    config = copy.deepcopy(base or valid())
    node = config
    *parents, last = path
    for key in parents:
        node = node[key]
    node[last] = value
    return config


def without(key):
    config = valid()
    del config[key]
    return config


INVALID = [
    ("unknown field", with_(["panelz"], []), "panelz"),
    ("missing outer model", without("outer_model"), "outer_model"),
    ("unrouted judge", with_(["routes"], [{"prefix": "mock-", "upstream": "mock"}], with_(["judge"], {"model": "gpt-x"})), "judge.model"),
    ("unknown upstream", with_(["routes"], [{"prefix": "", "upstream": "nope"}]), "routes[0].upstream"),
    ("route without match", with_(["routes"], [{"upstream": "mock"}]), "routes[0]"),
    ("empty aliases", with_(["aliases"], []), "aliases"),
    ("zero rounds", with_(["limits", "max_rounds"], 0), "limits.max_rounds"),
    ("zero timeout", with_(["limits", "tool_timeout_ms"], 0), "limits.tool_timeout_ms"),
    # Issue 16: no limit wraps or is cast; a value past its documented range is refused.
    ("turn timeout 2^64-1", with_(["limits", "turn_timeout_ms"], 2**64 - 1), "limits.turn_timeout_ms"),
    ("tool timeout 2^32", with_(["limits", "tool_timeout_ms"], 2**32 + 2000), "limits.tool_timeout_ms"),
    ("token cap 0", with_(["limits", "max_completion_tokens"], 0), "limits.max_completion_tokens"),
    ("grace past an hour", with_(["panel_grace_ms"], 2**63), "panel_grace_ms"),
    ("panel over cap", with_(["limits", "max_panel"], 2), "panel"),
    ("bad depth header", with_(["depth_header"], "X Depth"), "depth_header"),
    ("quorum above panel", with_(["min_panel_answers"], 5), "min_panel_answers"),
    ("negative price", with_(["prices"], {"mock-a": {"input_per_mtok": -1, "output_per_mtok": 1}}), "prices.mock-a"),
    ("preset unrouted", with_(["routes"], [{"prefix": "mock-", "upstream": "mock"}], with_(["presets"], {"x": {"panel": [{"model": "gpt-x"}]}})), "presets.x.panel[0].model"),
    ("missing key env", with_(["upstreams", "mock", "auth"], {"type": "bearer", "env": "FUSION_TEST_UNSET_KEY"}), "upstreams.mock.auth.env"),
    ("member tool without type", with_(["member_tools"], [{"name": "x"}]), "member_tools[0]"),
    # A Responses built-in tool on a Chat Completions upstream fails that member on every run.
    ("member tool its API refuses", with_(["member_tools"], [{"type": "web_search"}]), "member_tools[0]"),
    ("own tool its API refuses", with_(["panel"], [{"model": "mock-a", "tools": [{"type": "code_interpreter"}]}]),
     "panel[0].tools[0]"),
    ("bad overload policy", with_(["limits", "on_overload"], "explode"), "limits.on_overload"),
    ("zero concurrent runs", with_(["limits", "max_concurrent_runs"], 0), "limits.max_concurrent_runs"),
]


def start_envoy_with(mock, config, name):
    port, admin = free_port(), free_port()
    path = render(DEMO_CONFIG, RUN_DIR / f"{name}.yaml", fusion_config=config, LISTEN_PORT=port,
                  ADMIN_PORT=admin, MOCK_PORT=mock.port, WASM_PATH=WASM)
    return subprocess.run([str(ENVOY), "-c", str(path), "--disable-hot-restart", "--concurrency", "1",
                           "-l", "info", "--base-id", str(admin)],
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("case,config,field", INVALID, ids=[c[0] for c in INVALID])
def test_invalid_configuration_is_rejected_naming_the_field(mock, case, config, field):
    started = time.monotonic()
    proc = start_envoy_with(mock, config, "invalid")
    out = proc.stdout + proc.stderr
    # Envoy refuses the whole configuration: it exits instead of serving half of it.
    assert proc.returncode != 0, out[-2000:]
    line = next((l for l in out.splitlines() if "invalid fusion configuration" in l), None)
    assert line is not None, out[-2000:]
    # The message names the offending field in backticks, right after the prefix.
    assert f"invalid fusion configuration: `{field}`" in line, line
    # Rejected at load, not after a timeout (the process limit above is 60 s).
    assert time.monotonic() - started < 20
