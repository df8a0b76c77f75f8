"""`make run` (scripts/run.sh): fails fast naming what did not come up, shows the banner only
when Envoy and the mock both serve, and the banner's request shows the deliberation."""

from __future__ import annotations

import os
import re
import signal
import socket
import stat
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from harness import ROOT, free_port

RUN = ROOT / "scripts" / "run.sh"
# A failure must be reported well before this; a success needs Envoy to load the wasm.
FAIL_BOUND_S = 15
READY_BOUND_S = 90


def start(**env: object) -> subprocess.Popen:
    ports = {"LISTEN_PORT": free_port(), "ADMIN_PORT": free_port(), "MOCK_PORT": free_port()}
    full = dict(os.environ, **{k: str(v) for k, v in {**ports, "DEMO_EXIT_AFTER": 300, **env}.items()})
    # Its own session, as in a terminal: Ctrl-C goes to the whole process group.
    return subprocess.Popen(["bash", str(RUN)], cwd=ROOT, env=full, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def finish(proc: subprocess.Popen, bound: float = FAIL_BOUND_S) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=bound)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"run.sh still running after {bound}s\nstdout: {out}\nstderr: {err}")
    return proc.returncode, out, err


@pytest.fixture
def held_port():
    """A port held by a listener that accepts connections and never answers (not HTTP)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    yield s.getsockname()[1]
    s.close()


@pytest.mark.parametrize("var", ["LISTEN_PORT", "ADMIN_PORT", "MOCK_PORT"])
def test_a_taken_port_fails_fast_and_names_it(held_port, var):
    t0 = time.monotonic()
    rc, out, err = finish(start(**{var: held_port}))
    assert rc != 0
    assert time.monotonic() - t0 < FAIL_BOUND_S
    assert f"make run: port {held_port} ({var}) is already in use" in err, err
    assert "demo is up" not in out


def test_envoy_that_exits_is_named(tmp_path):
    rc, out, err = finish(start(ENVOY="/bin/false"))
    assert rc != 0
    assert "make run: Envoy exited with status 1 before the demo was ready" in err, err
    assert "demo is up" not in out


def test_mock_that_exits_is_named():
    rc, out, err = finish(start(DEMO_EXIT_AFTER=0))
    assert rc != 0
    assert "make run: mock-llm exited with status 0 before the demo was ready" in err, err
    assert "demo is up" not in out


def test_a_process_that_never_gets_ready_times_out(tmp_path):
    stub = tmp_path / "envoy"
    stub.write_text("#!/bin/sh\nexec sleep 60\n")
    stub.chmod(stub.stat().st_mode | stat.S_IXUSR)
    t0 = time.monotonic()
    proc = start(ENVOY=stub, READY_TIMEOUT=2)
    rc, out, err = finish(proc)
    assert rc != 0
    assert time.monotonic() - t0 < FAIL_BOUND_S
    assert re.search(r"make run: Envoy's admin on 127\.0\.0\.1:\d+ did not report ready within 2s", err), err
    assert "demo is up" not in out


def test_ctrl_c_while_waiting_for_readiness_ends_it(tmp_path):
    stub = tmp_path / "envoy"
    stub.write_text("#!/bin/sh\nexec sleep 60\n")
    stub.chmod(stub.stat().st_mode | stat.S_IXUSR)
    proc = start(ENVOY=stub, READY_TIMEOUT=60)
    time.sleep(3)
    assert proc.poll() is None, "still waiting for Envoy"
    t0 = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)
    rc, out, err = finish(proc, bound=10)
    assert rc == 130 and "make run: stopped" in out, (rc, out, err)
    assert time.monotonic() - t0 < 5


def read_banner(proc: subprocess.Popen) -> str:
    lines = []
    deadline = time.monotonic() + READY_BOUND_S
    assert proc.stdout is not None
    os.set_blocking(proc.stdout.fileno(), False)
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line:
            lines.append(line)
            if line.startswith("(drop the pipe"):
                return "".join(lines)
        elif proc.poll() is not None:
            break
        else:
            time.sleep(0.1)
    pytest.fail(f"no banner; stdout: {''.join(lines)}; stderr: {proc.stderr.read() if proc.stderr else ''}")


def test_banner_request_shows_the_deliberation_and_ctrl_c_stops_it():
    proc = start()
    try:
        banner = read_banner(proc)
        listen = int(re.search(r"Envoy with the filter on 127\.0\.0\.1:(\d+)", banner).group(1))
        # The page is served through Envoy's listener.
        page = httpx.get(f"http://127.0.0.1:{listen}/playground/", timeout=5)
        assert page.status_code == 200 and "fusion-wasm playground" in page.text
        # The banner's request, exactly as printed (continuation lines joined).
        m = re.search(r"^  (curl .*?show-fusion\.py)$", banner, re.S | re.M)
        assert m, banner
        command = m.group(1).replace("\\\n", " ")
        shown = subprocess.run(["bash", "-c", command], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert shown.returncode == 0, shown.stderr
        text = shown.stdout
        answers = re.findall(r"^== Response \d: (mock-\w)\n((?:   .*\n)+)", text, re.M)
        assert [a[0] for a in answers] == ["mock-a", "mock-b", "mock-c"], text
        assert len({a[1] for a in answers}) == 3, "three different answers"
        assert "Responses 1 and 3 are better supported." in text  # a contradiction, resolved
        assert "Only Response 2 notes that cloud droplets" in text  # a unique insight
        final = text.split("== Final answer (mock-outer)")[1]
        assert "Where they disagree, and whom I follow:" in final and "Mie scattering" in final
    finally:
        os.killpg(proc.pid, signal.SIGINT)
    rc, out, err = finish(proc, bound=10)
    assert rc == 130, err
    assert "make run: stopped" in out
    with socket.socket() as s:  # Envoy is gone: its listener port is free again
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", listen))
