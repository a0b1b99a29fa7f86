"""wizgy behind the real HAProxy from Debian's package (scripts/system-deps.sh installs it),
with examples/deploy/haproxy.cfg as shipped but for its bind, server and stats socket lines:
the PROXY protocol v2 brings the client's address to REMOTE_ADDR, and HAProxy's health checks
(which send the PROXY header too) keep the server up, and take it down when wizgy stops.

Clients connect from 127.0.0.2, so the address the app sees is the client's, not HAProxy's.
Every process started is stopped by its PID; every wait is bounded.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import signal
import socket
import subprocess
from pathlib import Path

import pytest
from helpers import Reader
from proc_util import tracked, wait_until

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
DEPLOY = Path(__file__).resolve().parent.parent / "examples" / "deploy"
CLIENT_ADDR = "127.0.0.2"

pytestmark = pytest.mark.skipif(
    not os.path.exists(HAPROXY), reason="haproxy is not installed (make sysdeps installs it)"
)


@pytest.fixture
def wserve(serve):
    yield from tracked(serve)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Haproxy:
    """HAProxy in the foreground (-db) running the documented config."""

    def __init__(self, directory: Path, server: str, check_interval: str = "2s") -> None:
        self.port = free_port()
        self.stats = directory / "admin.sock"
        text = (DEPLOY / "haproxy.cfg").read_text()
        rewrites = {
            "bind 127.0.0.1:8080": f"bind 127.0.0.1:{self.port}",
            "server app1 127.0.0.1:8000": f"server app1 {server}",
            "stats socket /run/haproxy/admin.sock": f"stats socket {self.stats}",
            "inter 2s": f"inter {check_interval}",
        }
        for old, new in rewrites.items():
            assert text.count(old) == 1, f"examples/deploy/haproxy.cfg no longer has {old!r} once"
            text = text.replace(old, new)
        conf = directory / "haproxy.cfg"
        conf.write_text(text)
        check = subprocess.run([HAPROXY, "-c", "-f", str(conf)], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
        self.proc = subprocess.Popen(
            [HAPROXY, "-db", "-f", str(conf)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            wait_until(self._listening, 10, what="haproxy listening")
        except AssertionError:
            self.stop()
            raise

    def _listening(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"haproxy exited: {self.proc.stderr.read().decode()}")
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
        except OSError:
            return False
        return self.stats.exists()

    def server_stat(self) -> dict:
        """The `show stat` row of server app1 (runtime API on the stats socket)."""
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            sock.connect(str(self.stats))
            sock.sendall(b"show stat\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        rows = csv.DictReader(io.StringIO(data.decode().lstrip("# ")))
        return next(row for row in rows if row["svname"] == "app1")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


@pytest.fixture
def haproxy(tmp_path):
    started: list[Haproxy] = []

    def start(server: str, **kwargs) -> Haproxy:
        proxy = Haproxy(tmp_path, server, **kwargs)
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        proxy.stop()


def get_from(port: int, path: str) -> tuple[int, bytes]:
    """GET ``path`` through HAProxy on a connection from 127.0.0.2."""
    with socket.create_connection(("127.0.0.1", port), 10, source_address=(CLIENT_ADDR, 0)) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n".encode())
        resp = Reader(s).response()
    return resp.status, resp.body


def wizgy_options() -> list[str]:
    """The options the config's header says to run wizgy with, but for --bind."""
    line = next(
        line for line in (DEPLOY / "haproxy.cfg").read_text().splitlines() if "#   wizgy" in line
    )
    words = line.split("#   wizgy", 1)[1].split()
    assert words[:2] == ["--bind", "127.0.0.1:8000"], words
    return words[2:-1]


def test_behind_haproxy_the_proxy_protocol_brings_the_client_address(wserve, haproxy, tmp_path):
    options = wizgy_options()
    assert "--proxy-protocol" in options
    log = tmp_path / "access.log"
    server = wserve("deploy_apps:app", "--threads", "2", "--access-log", str(log), *options)
    proxy = haproxy("{}:{}".format(*server.addr), check_interval="200ms")
    status, body = get_from(proxy.port, "/who")
    assert status == 200, body
    seen = json.loads(body)
    print(f"via haproxy: {seen}")
    assert seen["remote_addr"] == CLIENT_ADDR
    assert seen["remote_port"] not in ("", None)
    assert seen["x_forwarded_for"] is None  # nothing to trust but the PROXY header
    # the health checks reach the app, with the PROXY header, and keep app1 up
    wait_until(lambda: proxy.server_stat()["check_status"] == "L7OK", 10, what="a passed check")
    row = proxy.server_stat()
    assert row["status"] == "UP", row
    # the access log is written by its own thread in 10 ms batches, later under a loaded CI
    wait_until(
        lambda: log.exists() and "GET / HTTP/1.1" in log.read_text(), 5, what="a logged check"
    )


def test_haproxy_health_checks_take_a_stopped_wizgy_out(wserve, haproxy):
    server = wserve("deploy_apps:app", "--threads", "2", *wizgy_options())
    proxy = haproxy("{}:{}".format(*server.addr), check_interval="200ms")
    wait_until(lambda: proxy.server_stat()["status"] == "UP", 10, what="app1 up")
    assert server.stop() == 0, server.log()
    wait_until(lambda: proxy.server_stat()["status"] == "DOWN", 10, what="app1 down")
    status, _ = get_from(proxy.port, "/who")
    assert status == 503


def test_without_the_proxy_header_wizgy_refuses_haproxys_connections(wserve, haproxy, tmp_path):
    # the control: the address above came from the PROXY header, and wizgy insists on it
    cfg = (DEPLOY / "haproxy.cfg").read_text()
    assert "send-proxy-v2" in cfg and "check-send-proxy" in cfg
    server = wserve("deploy_apps:app", "--threads", "2", *wizgy_options())
    with socket.create_connection(server.addr, 5) as sock:
        sock.sendall(b"GET /who HTTP/1.1\r\nHost: example.com\r\n\r\n")
        sock.settimeout(5)
        try:
            answer = sock.recv(4096)
        except ConnectionResetError:
            answer = b""
    assert answer == b"", answer  # closed unanswered: no request is read without the header
