"""The systemd units and the Kubernetes manifest in examples/deploy/, run with the settings they
ship with (only the interpreter, the app and addresses are the test's own).

- wizgy.socket + wizgy.service: systemd's own `systemd-socket-activate` (Debian's systemd
  package) binds the socket the unit names and starts the unit's ExecStart with LISTEN_FDS, as
  systemd does; SIGTERM to the main PID (KillMode=mixed) drains and exits 0 well within
  TimeoutStopSec.
- wizgy-standalone.service: its ExecStart binds its own socket and writes its pid file.
- kubernetes.yaml: the container's args serve, the readiness path answers, and after SIGTERM
  (what the kubelet sends once preStop ends) new connections are refused, the request in
  flight finishes and wizgy exits 0 within --graceful-timeout; the grace period covers preStop,
  the graceful timeout and wizgy's 1.5 s wind-down.

Every process is stopped by its PID; every wait is bounded.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import sys
import time
from pathlib import Path

import pytest
from conftest import APPS, Server
from helpers import connect, request
from proc_util import InFlight, tracked, wait_exit, wait_until, wait_workers

DEPLOY = Path(__file__).resolve().parent.parent / "examples" / "deploy"
ACTIVATE = shutil.which("systemd-socket-activate")
APP = "deploy_apps:app"


@pytest.fixture
def wserve(serve):
    yield from tracked(serve)


def unit(name: str) -> dict[str, str]:
    """The Key=Value settings of a unit file (one value per key is all these units use)."""
    settings = {}
    for line in (DEPLOY / name).read_text().splitlines():
        if line and not line.startswith(("#", "[")) and "=" in line:
            key, _, value = line.partition("=")
            assert key not in settings, f"{name}: {key} twice"
            settings[key.strip()] = value.strip()
    return settings


def seconds(text: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)?", text)
    assert match, text
    value, unit_ = float(match.group(1)), match.group(2) or "s"
    return value * {"ms": 0.001, "s": 1, "m": 60}[unit_]


def exec_start(settings: dict[str, str]) -> tuple[list[str], str]:
    """ExecStart's options and its APP; the program must be a virtualenv's wizgy."""
    words = shlex.split(settings["ExecStart"])
    assert words[0].endswith("/.venv/bin/wizgy"), words[0]
    return words[1:-1], words[-1]


def option(words: list[str], name: str) -> str:
    assert words.count(name) == 1, (name, words)
    return words[words.index(name) + 1]


def test_the_systemd_units_stop_within_their_timeouts_and_reload_with_sighup():
    for name in ("wizgy.service", "wizgy-standalone.service"):
        settings = unit(name)
        options, app = exec_start(settings)
        assert app == "myproject.wsgi:application"
        graceful = seconds(option(options, "--graceful-timeout"))
        # systemd SIGKILLs what is left at TimeoutStopSec: after wizgy's own 1.5 s wind-down
        assert seconds(settings["TimeoutStopSec"]) > graceful + 1.5, name
        assert settings["KillMode"] == "mixed" and settings["KillSignal"] == "SIGTERM", name
        assert settings["ExecReload"] == "/bin/kill -HUP $MAINPID", name
    assert unit("wizgy.service")["Requires"] == "wizgy.socket"
    assert "--bind" not in exec_start(unit("wizgy.service"))[0]  # the socket comes from systemd


@pytest.mark.skipif(ACTIVATE is None, reason="systemd-socket-activate missing (make sysdeps)")
def test_wizgy_service_serves_on_the_socket_systemd_passes_and_drains_on_sigterm(wserve, tmp_path):
    socket_unit = unit("wizgy.socket")
    assert socket_unit["ListenStream"] == "/run/wizgy/wizgy.sock"
    options, _ = exec_start(unit("wizgy.service"))
    path = tmp_path / "wizgy.sock"
    argv = [ACTIVATE, "--listen", str(path), sys.executable, "-m", "wizgy"]
    argv += [*options, "--threads", "2", APP]
    server = wserve.add(Server(argv, APPS))
    wait_until(path.exists, 15, what="the socket systemd-socket-activate binds")
    # the first connection starts wizgy, and waits in the socket's backlog meanwhile
    first = InFlight(str(path), "/who", timeout=20)
    server.wait_ready(20)
    assert f"listening on unix:{path}" in server.log(), server.log()
    resp = first.wait(20)
    assert not isinstance(resp, Exception) and resp.status == 200, resp
    workers = options[options.index("--workers") + 1]
    wait_workers(server, int(workers), timeout=20)
    assert json.loads(resp.body)["remote_addr"] == ""  # a unix socket's peer
    slow = InFlight(str(path), "/sleep?1", timeout=10)
    time.sleep(0.3)  # the request reaches its app thread
    signalled = time.monotonic()
    os.kill(server.proc.pid, signal.SIGTERM)  # KillMode=mixed: the main PID only
    resp = slow.wait(10)
    assert not isinstance(resp, Exception) and resp.status == 200, resp
    assert wait_exit(server, seconds(option(options, "--graceful-timeout"))) == 0, server.log()
    print(f"wizgy.service: SIGTERM to exit {time.monotonic() - signalled:.2f}s")
    # the socket belongs to systemd: wizgy does not remove it
    assert path.exists()


def test_wizgy_standalone_service_binds_its_socket_and_writes_its_pid_file(wserve, tmp_path):
    options, _ = exec_start(unit("wizgy-standalone.service"))
    assert option(options, "--bind") == "unix:/run/wizgy/wizgy.sock"
    assert option(options, "--pid") == "/run/wizgy/wizgy.pid"
    path, pid_file = tmp_path / "wizgy.sock", tmp_path / "wizgy.pid"
    mine = list(options)
    mine[mine.index("--bind") + 1] = f"unix:{path}"
    mine[mine.index("--pid") + 1] = str(pid_file)
    server = wserve(APP, *mine, "--threads", "2", bind=None)
    assert server.unix_path == str(path)
    assert int(pid_file.read_text()) == server.proc.pid
    assert request(str(path), "GET", "/who", timeout=10).status == 200
    assert server.stop() == 0, server.log()
    assert not path.exists() and not pid_file.exists()


def manifest_args() -> list[str]:
    match = re.search(r"^\s*args: (\[.*\])$", (DEPLOY / "kubernetes.yaml").read_text(), re.M)
    assert match, "kubernetes.yaml: no one-line args list"
    return json.loads(match.group(1))


def manifest_number(key: str) -> float:
    matches = re.findall(rf"^\s*{key}: (\d+)$", (DEPLOY / "kubernetes.yaml").read_text(), re.M)
    assert len(matches) == 1, (key, matches)
    return float(matches[0])


def test_the_kubernetes_grace_period_covers_prestop_and_the_graceful_timeout():
    args = manifest_args()
    assert args[0] == "wizgy"
    graceful = seconds(option(args, "--graceful-timeout"))
    prestop = manifest_number("seconds")
    grace = manifest_number("terminationGracePeriodSeconds")
    print(f"preStop {prestop}s + graceful {graceful}s + 1.5s <= grace period {grace}s")
    assert prestop + graceful + 1.5 <= grace
    text = (DEPLOY / "kubernetes.yaml").read_text()
    assert "readinessProbe:" in text and "livenessProbe:" in text and "preStop:" in text


def refused(addr) -> bool:
    try:
        connect(addr, timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def test_the_kubernetes_args_serve_probes_and_drain_on_sigterm(wserve):
    args = manifest_args()
    assert option(args, "--bind") == "0.0.0.0:8000"
    mine = list(args[1:-1])
    mine[mine.index("--bind") + 1] = "127.0.0.1:0"
    server = wserve(APP, *mine, "--threads", "2", bind=None)
    wait_workers(server, int(option(args, "--workers")), timeout=20)
    # the readiness probe's GET / and the liveness probe's TCP connect
    assert request(server.addr, "GET", "/", timeout=5).status == 200
    socket.create_connection(server.addr, timeout=5).close()
    slow = InFlight(server.addr, "/sleep?2", timeout=15)
    time.sleep(0.3)
    signalled = time.monotonic()
    os.kill(server.proc.pid, signal.SIGTERM)
    wait_until(lambda: refused(server.addr), 2, interval=0.02, what="new connections refused")
    resp = slow.wait(10)
    assert not isinstance(resp, Exception) and resp.status == 200, resp
    graceful = seconds(option(args, "--graceful-timeout"))
    assert wait_exit(server, graceful) == 0, server.log()
    took = time.monotonic() - signalled
    print(f"kubernetes args: SIGTERM to exit {took:.2f}s (graceful timeout {graceful}s)")
    assert took < graceful
