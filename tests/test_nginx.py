"""wizgy behind the real nginx from Debian's package (scripts/system-deps.sh installs it):
trusted forwarded headers over a unix socket and TCP, and who may connect to the socket
(issue 23); then the documented deployment, examples/deploy/nginx.conf (issue 22): the client's
address and scheme, a 64 MiB upload, a streamed response, the keep-alive pool and a reload
under load.

nginx runs as root with its workers as `nobody`, as a packaged nginx runs as `www-data`, so a
socket that only root may open is the 502 users saw. Everything listens on 127.0.0.1 or in a
directory made here; every process started is stopped by its PID.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Optional

import pytest
from helpers import request
from proc_util import tracked, wait_until, wait_workers, workers

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
ROOT = os.geteuid() == 0

pytestmark = pytest.mark.skipif(
    not os.path.exists(NGINX), reason="nginx is not installed (make sysdeps installs it)"
)


@pytest.fixture
def wserve(serve):
    yield from tracked(serve)


@pytest.fixture
def site():
    # not pytest's tmp_path: its 0700 directories keep nginx's `nobody` workers out of any
    # socket inside, whatever the socket's mode
    path = Path(tempfile.mkdtemp(prefix="wizgy-nginx-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def simple_http_block(upstream: str, port: int) -> str:
    """A minimal proxy to ``upstream`` that says every client came over https."""
    return f"""
    upstream wizgy {{
        server {upstream};
        keepalive 4;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://wizgy;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Proto https;
        }}
    }}
"""


class Nginx:
    """nginx in the foreground: ``http_block`` (the proxying part) inside a main config that
    keeps everything in ``directory``; up once each of ``ports`` accepts."""

    def __init__(self, directory: Path, http_block: str, ports: list[int]) -> None:
        self.port = ports[0]
        self.error_log = directory / "nginx-error.log"
        conf = directory / "nginx.conf"
        temp = "\n".join(
            f"    {kind}_temp_path {directory}/{kind};"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        conf.write_text(
            f"""
{"user nobody nogroup;" if ROOT else ""}
worker_processes 1;
daemon off;
pid {directory}/nginx.pid;
error_log {self.error_log} info;
events {{ worker_connections 256; }}
http {{
    access_log off;
{temp}
{http_block}
}}
"""
        )
        self.proc = subprocess.Popen(
            [NGINX, "-c", str(conf), "-p", str(directory)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 10
        pending = list(ports)
        while pending and time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"nginx exited: {self.proc.stderr.read().decode()}")
            try:
                socket.create_connection(("127.0.0.1", pending[0]), timeout=0.5).close()
                pending.pop(0)
            except OSError:
                time.sleep(0.05)
        if pending:
            self.stop()
            raise AssertionError("nginx did not listen within 10 s")

    @property
    def addr(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def log(self) -> str:
        return self.error_log.read_text() if self.error_log.exists() else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


@pytest.fixture
def nginx():
    started: list[Nginx] = []

    def start(directory: Path, upstream: str) -> Nginx:
        port = free_port()
        proxy = Nginx(directory, simple_http_block(upstream, port), [port])
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        proxy.stop()


def environ_through(proxy: Nginx) -> dict:
    resp = request(proxy.addr, "GET", "/via-nginx", timeout=10)
    assert resp.status == 200, (resp.status, resp.body[:300], proxy.log()[-2000:])
    return resp.json()["environ"]


def test_behind_nginx_on_a_unix_socket_the_forwarded_scheme_and_client_are_trusted(
    wserve, nginx, site
):
    sock = site / "wizgy.sock"
    wserve("echo:app", "--workers", "2", "--threads", "2", "--forwarded-for", bind=f"unix:{sock}")
    environ = environ_through(nginx(site, f"unix:{sock}"))
    print(
        f"unix socket via nginx: REMOTE_ADDR={environ['REMOTE_ADDR']!r} "
        f"scheme={environ['wsgi.url_scheme']}"
    )
    assert environ["wsgi.url_scheme"] == "https"
    assert environ["REMOTE_ADDR"] == "127.0.0.1"
    assert environ["SERVER_SOFTWARE"].startswith("wizgy/")


def test_behind_nginx_on_a_unix_socket_an_empty_allow_list_trusts_no_one(wserve, nginx, site):
    # the control: the headers above were trusted because of the rule, not by accident
    sock = site / "wizgy.sock"
    wserve(
        "echo:app", "--threads", "2", "--forwarded-for", "--forwarded-allow-ips", "",
        bind=f"unix:{sock}",
    )  # fmt: skip
    environ = environ_through(nginx(site, f"unix:{sock}"))
    assert environ["wsgi.url_scheme"] == "http"
    assert environ["REMOTE_ADDR"] == ""


def test_behind_nginx_over_tcp_the_same_headers_give_the_same_view(wserve, nginx, site):
    server = wserve("echo:app", "--threads", "2", "--forwarded-for")
    host, port = server.addr
    environ = environ_through(nginx(site, f"{host}:{port}"))
    assert environ["wsgi.url_scheme"] == "https"
    assert environ["REMOTE_ADDR"] == "127.0.0.1"


def test_a_django_site_behind_nginx_on_a_unix_socket_is_secure(wserve, nginx, site):
    pytest.importorskip("django")
    sock = site / "wizgy.sock"
    wserve("fw_django:application", "--threads", "2", "--forwarded-for", bind=f"unix:{sock}")
    proxy = nginx(site, f"unix:{sock}")
    resp = request(proxy.addr, "GET", "/secure", timeout=10)
    assert resp.status == 200, (resp.status, resp.body[:300], proxy.log()[-2000:])
    assert resp.json() == {"is_secure": True, "remote_addr": "127.0.0.1"}


@pytest.mark.skipif(not ROOT, reason="nginx can run its workers as another user only as root")
def test_nginx_workers_as_another_user_can_connect_to_the_default_socket(wserve, nginx, site):
    sock = site / "wizgy.sock"
    wserve("echo:app", "--threads", "2", bind=f"unix:{sock}")
    proxy = nginx(site, f"unix:{sock}")
    assert request(proxy.addr, "GET", "/", timeout=10).status == 200, proxy.log()[-2000:]
    assert "Permission denied" not in proxy.log()


@pytest.mark.skipif(not ROOT, reason="nginx can run its workers as another user only as root")
def test_socket_mode_600_locks_nginx_workers_out(wserve, nginx, site):
    # the control for the test above: the socket's mode is what lets nginx in
    sock = site / "wizgy.sock"
    wserve("echo:app", "--threads", "2", "--socket-mode", "600", bind=f"unix:{sock}")
    proxy = nginx(site, f"unix:{sock}")
    assert request(proxy.addr, "GET", "/", timeout=10).status == 502
    assert "Permission denied" in proxy.log()


@pytest.mark.skipif(not ROOT, reason="nginx can run its workers as another user only as root")
def test_socket_group_lets_only_that_group_in(wserve, nginx, site):
    sock = site / "wizgy.sock"
    wserve(
        "echo:app", "--threads", "2", "--socket-mode", "660", "--socket-group", "nogroup",
        bind=f"unix:{sock}",
    )  # fmt: skip
    proxy = nginx(site, f"unix:{sock}")
    assert request(proxy.addr, "GET", "/", timeout=10).status == 200, proxy.log()[-2000:]


# --- the documented deployment: examples/deploy/nginx.conf (issue 22) ------------------------
#
# The file is used as shipped but for the lines that name ports, the socket and certificate
# files; nginx terminates TLS, as in production, and clients connect from 127.0.0.2 so the
# address wizgy reports is the client's, not nginx's (127.0.0.1).

DEPLOY = Path(__file__).resolve().parent.parent / "examples" / "deploy"
CLIENT_ADDR = "127.0.0.2"


def self_signed(directory: Path) -> tuple[Path, Path]:
    from test_tls import issue

    leaf = issue("localhost")
    cert, key = directory / "cert.pem", directory / "key.pem"
    cert.write_bytes(leaf.cert_pem)
    key.write_bytes(leaf.key_pem())
    return cert, key


def documented_http_block(upstream: str, http_port: int, https_port: int, directory: Path):
    """examples/deploy/nginx.conf with only its address and file lines rewritten."""
    cert, key = self_signed(directory)
    text = (DEPLOY / "nginx.conf").read_text()
    rewrites = {
        "server unix:/run/wizgy/wizgy.sock;": f"server {upstream};",
        "listen 80;": f"listen 127.0.0.1:{http_port};",
        "listen [::]:80;": "",
        "listen 443 ssl;": f"listen 127.0.0.1:{https_port} ssl;",
        "listen [::]:443 ssl;": "",
        "ssl_certificate /etc/letsencrypt/live/example.com/fullchain.pem;": (
            f"ssl_certificate {cert};"
        ),
        "ssl_certificate_key /etc/letsencrypt/live/example.com/privkey.pem;": (
            f"ssl_certificate_key {key};"
        ),
    }
    for old, new in rewrites.items():
        assert text.count(old) == 1, f"examples/deploy/nginx.conf no longer has {old!r} once"
        text = text.replace(old, new)
    return text


@pytest.fixture
def documented_nginx(nginx_procs):
    def start(directory: Path, upstream: str) -> Nginx:
        http_port, https_port = free_port(), free_port()
        block = documented_http_block(upstream, http_port, https_port, directory)
        proxy = Nginx(directory, block, [https_port, http_port])
        proxy.http_port = http_port
        nginx_procs.append(proxy)
        return proxy

    return start


@pytest.fixture
def nginx_procs():
    started: list[Nginx] = []
    yield started
    for proxy in started:
        proxy.stop()


def https(proxy: Nginx, timeout: float = 15.0) -> http.client.HTTPSConnection:
    """A keep-alive HTTPS connection to ``proxy`` from 127.0.0.2 (the certificate is not
    checked: nginx's TLS is not what is under test)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return http.client.HTTPSConnection(
        "127.0.0.1", proxy.port, timeout=timeout, context=context,
        source_address=(CLIENT_ADDR, 0),
    )  # fmt: skip


def get_json_via(proxy: Nginx, path: str = "/", headers: Optional[dict] = None) -> dict:
    conn = https(proxy)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        body = resp.read()
    finally:
        conn.close()
    assert resp.status == 200, (resp.status, body[:300], proxy.log()[-2000:])
    return json.loads(body)


@pytest.mark.parametrize("transport", ["unix", "tcp"])
def test_the_documented_nginx_config_gives_the_app_the_client_address_and_https(
    wserve, documented_nginx, site, transport
):
    if transport == "unix":
        sock = site / "wizgy.sock"
        wserve("deploy_apps:app", "--threads", "2", "--forwarded-for", bind=f"unix:{sock}")
        upstream = f"unix:{sock}"
    else:
        server = wserve("deploy_apps:app", "--threads", "2", "--forwarded-for")
        upstream = "{}:{}".format(*server.addr)
    proxy = documented_nginx(site, upstream)
    # a client's own X-Forwarded-For is kept in front of the address nginx appends, and ignored
    seen = get_json_via(proxy, "/who", headers={"X-Forwarded-For": "203.0.113.9"})
    print(f"{transport}: {seen}")
    assert seen["remote_addr"] == CLIENT_ADDR
    assert seen["scheme"] == "https"
    assert seen["x_forwarded_for"] == f"203.0.113.9, {CLIENT_ADDR}"
    assert seen["host"] == f"127.0.0.1:{proxy.port}"
    # the plain-HTTP server only redirects to https
    resp = request(("127.0.0.1", proxy.http_port), "GET", "/who?x=1", timeout=10)
    assert resp.status == 301
    assert resp.header("location") == "https://localhost/who?x=1"


def test_the_documented_nginx_config_is_not_trusted_without_forwarded_allow_ips(
    wserve, documented_nginx, site
):
    # the control: the same headers from a peer wizgy does not trust change nothing
    sock = site / "wizgy.sock"
    wserve(
        "deploy_apps:app", "--threads", "2", "--forwarded-for", "--forwarded-allow-ips", "",
        bind=f"unix:{sock}",
    )  # fmt: skip
    seen = get_json_via(documented_nginx(site, f"unix:{sock}"), "/who")
    assert seen["remote_addr"] == ""
    assert seen["scheme"] == "http"


def test_a_64_mib_upload_streams_through_nginx_to_the_app(wserve, documented_nginx, site):
    sock = site / "wizgy.sock"
    wserve("deploy_apps:app", "--threads", "2", "--forwarded-for", bind=f"unix:{sock}")
    proxy = documented_nginx(site, f"unix:{sock}")
    piece = os.urandom(1 << 20)
    expected = hashlib.sha256()
    for _ in range(64):
        expected.update(piece)
    conn = https(proxy, timeout=60)
    try:
        conn.putrequest("POST", "/upload")
        conn.putheader("Content-Length", str(64 << 20))
        conn.endheaders()
        for _ in range(64):
            conn.send(piece)
        resp = conn.getresponse()
        body = resp.read()
    finally:
        conn.close()
    assert resp.status == 200, (resp.status, body[:300], proxy.log()[-2000:])
    assert json.loads(body) == {"size": 64 << 20, "sha256": expected.hexdigest()}
    # proxy_request_buffering off: nginx streamed the body instead of spooling it to disk first
    assert "buffered to a temporary file" not in proxy.log()
    assert not any((site / "client_body").rglob("*[0-9]*"))


def test_a_streamed_response_passes_through_nginx_piece_by_piece(wserve, documented_nginx, site):
    sock = site / "wizgy.sock"
    wserve("deploy_apps:app", "--threads", "2", bind=f"unix:{sock}")
    proxy = documented_nginx(site, f"unix:{sock}")
    conn = https(proxy)
    try:
        started = time.monotonic()
        conn.request("GET", "/stream")
        resp = conn.getresponse()
        first = resp.readline()
        first_at = time.monotonic() - started
        rest = resp.read()
        total = time.monotonic() - started
    finally:
        conn.close()
    print(f"stream through nginx: first line after {first_at:.2f}s, all after {total:.2f}s")
    assert resp.status == 200
    assert (first, rest) == (b"first\n", b"last\n")
    assert total >= 1.4
    assert first_at < 1.0, "nginx held the first piece back until the app finished"


def test_nginx_reuses_its_keep_alive_connections_to_wizgy(wserve, documented_nginx, site):
    # without --forwarded-for REMOTE_PORT is nginx's end of the upstream connection: one port
    # for 20 requests (on 20 client connections) means one upstream connection carried them all
    server = wserve("deploy_apps:app", "--threads", "2")
    proxy = documented_nginx(site, "{}:{}".format(*server.addr))
    ports = [get_json_via(proxy, f"/n{i}")["remote_port"] for i in range(20)]
    print(f"upstream ports seen by wizgy: {sorted(set(ports))}")
    assert all(ports)
    assert len(set(ports)) == 1, ports


def test_a_sighup_reload_under_load_through_nginx_gives_no_5xx(wserve, documented_nginx, site):
    sock = site / "wizgy.sock"
    server = wserve(
        "deploy_apps:app", "--workers", "2", "--threads", "4", "--forwarded-for",
        bind=f"unix:{sock}",
    )  # fmt: skip
    old = wait_workers(server, 2)
    proxy = documented_nginx(site, f"unix:{sock}")
    statuses: list[object] = []
    pids: set[int] = set()
    lock = threading.Lock()
    stop = threading.Event()

    def client() -> None:
        conn = https(proxy, timeout=10)
        try:
            for _ in range(5000):  # bounded: the test stops it long before
                if stop.is_set():
                    return
                try:
                    conn.request("GET", "/load")
                    resp = conn.getresponse()
                    body = resp.read()
                    outcome: object = resp.status
                    pid = json.loads(body)["pid"] if resp.status == 200 else None
                except (OSError, http.client.HTTPException) as exc:
                    outcome, pid = f"{type(exc).__name__}: {exc}", None
                    conn.close()
                    conn = https(proxy, timeout=10)
                with lock:
                    statuses.append(outcome)
                    if pid:
                        pids.add(pid)
        finally:
            conn.close()

    threads = [threading.Thread(target=client, daemon=True) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: len(statuses) >= 50, 10, what="50 requests before the reload")
        os.kill(server.proc.pid, signal.SIGHUP)
        new = wait_until(
            lambda: (lambda now: now if len(now) == 2 and not now & old else None)(workers(server)),
            20,
            what="two new workers",
        )
        with lock:
            at_reload = len(statuses)
        wait_until(lambda: len(statuses) >= at_reload + 50, 10, what="50 requests after")
    finally:
        stop.set()
        for thread in threads:
            thread.join(15)
    failed = [s for s in statuses if s != 200]
    print(f"SIGHUP through nginx: {len(statuses)} requests, {len(failed)} failed, pids {pids}")
    assert not failed, (failed[:5], proxy.log()[-2000:])
    assert pids & old and pids & new, (pids, old, new)
