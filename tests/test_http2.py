"""HTTP/2 (issue 20): h2c with prior knowledge and h2 over TLS by ALPN, each stream one WSGI
exchange, and the known HTTP/2 attacks bounded.

The frame-level client is the Python ``h2`` package: its state machine checks every frame wizgy
sends (a frame that breaks RFC 9113 raises ProtocolError in the client), which is the
conformance suite used here, with curl (``--http2``, ``--http2-prior-knowledge``), nghttp and
h2load from Debian's nghttp2-client. Hostile frames are made with ``hyperframe`` and ``hpack``
(h2's own encoders) and written to the socket directly. Everything runs on 127.0.0.1, every
loop is bounded in count and time, and servers are stopped by PID.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path
from typing import Optional

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import pytest
from helpers import request
from hpack import Encoder
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
)

APP = "h2_apps:app"
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
NGHTTP = shutil.which("nghttp")
H2LOAD = shutil.which("h2load")


# --- a frame-level client -----------------------------------------------------------------------


class Reply:
    def __init__(self) -> None:
        self.headers: dict[str, str] = {}
        self.header_list: list[tuple[str, str]] = []
        self.data = bytearray()
        self.ended = False
        self.reset: Optional[int] = None

    @property
    def status(self) -> int:
        return int(self.headers[":status"])


class Client:
    """One HTTP/2 connection driven by the ``h2`` package's client state machine."""

    def __init__(
        self, sock: socket.socket, settings: Optional[dict] = None, preface: bool = True
    ) -> None:
        self.sock = sock
        config = h2.config.H2Configuration(
            client_side=True, header_encoding="utf-8", validate_outbound_headers=False
        )
        self.conn = h2.connection.H2Connection(config)
        self.replies: dict[int, Reply] = {}
        self.goaway: Optional[h2.events.ConnectionTerminated] = None
        self.closed = False
        if preface:
            self.conn.initiate_connection()
            if settings:
                self.conn.update_settings(settings)
            self.flush()

    @classmethod
    def to(cls, server, **kwargs) -> Client:
        return cls(socket.create_connection(server.addr, timeout=10), **kwargs)

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def get(
        self,
        path: str,
        method: str = "GET",
        headers=(),
        body: Optional[bytes] = None,
        end: bool = True,
        authority: str = "localhost",
    ) -> int:
        stream = self.conn.get_next_available_stream_id()
        fields = [
            (":method", method),
            (":path", path),
            (":scheme", "http"),
            (":authority", authority),
            *headers,
        ]
        self.conn.send_headers(stream, fields, end_stream=end and body is None)
        self.replies[stream] = Reply()
        self.flush()
        if body is not None:
            self.send_body(stream, body, end)
        return stream

    def send_body(self, stream: int, body: bytes, end: bool = True, deadline: float = 30.0) -> None:
        """Sends ``body`` within the windows wizgy grants, reading its frames meanwhile."""
        limit = time.monotonic() + deadline
        view = memoryview(body)
        while view:
            window = min(
                self.conn.local_flow_control_window(stream), self.conn.max_outbound_frame_size
            )
            if window > 0:
                chunk, view = view[:window], view[window:]
                self.conn.send_data(stream, bytes(chunk), end_stream=end and not view)
                self.flush()
                continue
            assert time.monotonic() < limit, "wizgy never opened the window"
            self.pump(0.5)
        if end and not body:
            self.conn.end_stream(stream)
            self.flush()

    def pump(self, timeout: float = 5.0) -> bool:
        """Reads once (up to ``timeout``) and handles the frames; False once closed."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return True
        except (ConnectionResetError, BrokenPipeError):
            data = b""
        if not data:
            self.closed = True
            return False
        for event in self.conn.receive_data(data):
            self.handle(event)
        self.flush()
        return True

    def handle(self, event) -> None:
        if isinstance(event, h2.events.ResponseReceived):
            reply = self.replies.setdefault(event.stream_id, Reply())
            reply.header_list = list(event.headers)
            reply.headers = dict(event.headers)
        elif isinstance(event, h2.events.DataReceived):
            self.replies[event.stream_id].data += event.data
            self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.StreamEnded):
            self.replies[event.stream_id].ended = True
        elif isinstance(event, h2.events.StreamReset):
            self.replies.setdefault(event.stream_id, Reply()).reset = event.error_code
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.goaway = event

    def wait(self, *streams: int, timeout: float = 15.0) -> list[Reply]:
        deadline = time.monotonic() + timeout
        while not all(self.replies[s].ended or self.replies[s].reset is not None for s in streams):
            assert time.monotonic() < deadline, f"streams {streams} not done in {timeout}s"
            if not self.pump(min(1.0, deadline - time.monotonic())):
                break
        return [self.replies[s] for s in streams]

    def wait_closed(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.closed and time.monotonic() < deadline:
            try:
                self.pump(0.5)
            except h2.exceptions.ProtocolError:
                # frames after our own view of the connection ended
                return

    def close(self) -> None:
        self.sock.close()


def h2c(serve, *options, **kwargs):
    return serve(APP, "--http", "2", *options, **kwargs)


def environ_of(reply: Reply) -> dict:
    assert reply.status == 200, reply.data
    return json.loads(reply.data)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def worker_pid(server) -> int:
    client = Client.to(server)
    (reply,) = client.wait(client.get("/env"))
    client.close()
    return environ_of(reply)["pid"]


# --- the mapping --------------------------------------------------------------------------------


def test_h2c_prior_knowledge_maps_pseudo_headers_into_the_environ(serve):
    server = serve(APP)  # --http auto: the preface alone picks HTTP/2
    client = Client.to(server)
    stream = client.get(
        "/env/caf%C3%A9/a%2Fb?x=1&y=%20",
        headers=[("cookie", "a=1"), ("cookie", "b=2"), ("x-custom", "v"), ("host", "ignored")],
        authority="example.test:8443",
    )
    (reply,) = client.wait(stream)
    env = environ_of(reply)["environ"]
    assert env["SERVER_PROTOCOL"] == "HTTP/2"
    assert env["REQUEST_METHOD"] == "GET"
    assert env["HTTP_HOST"] == "example.test:8443"
    assert env["SERVER_NAME"] == "example.test"
    assert env["PATH_INFO"] == "/env/café/a/b".encode().decode("latin-1")
    assert env["QUERY_STRING"] == "x=1&y=%20"
    assert env["RAW_URI"] == "/env/caf%C3%A9/a%2Fb?x=1&y=%20"
    assert env["HTTP_COOKIE"] == "a=1; b=2"
    assert env["HTTP_X_CUSTOM"] == "v"
    assert env["wsgi.url_scheme"] == "http"
    assert "CONTENT_LENGTH" not in env
    assert reply.headers["server"] == "wizgy"
    assert "date" in reply.headers
    client.close()


def test_http1_still_works_beside_h2c_in_auto_mode_and_http1_only_refuses_the_preface(serve):
    server = serve(APP)
    assert request(server.addr, "GET", "/").status == 200
    only1 = serve(APP, "--http", "1")
    assert request(only1.addr, "GET", "/").status == 200
    with socket.create_connection(only1.addr, timeout=5) as sock:
        sock.sendall(PREFACE)
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 505 ") or answer.startswith(b"HTTP/1.1 400 "), answer


def test_http2_only_closes_an_http1_request_without_serving_it(serve):
    server = h2c(serve)
    with socket.create_connection(server.addr, timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        data, closed = drain(sock, 5)
    assert closed
    assert b"hello" not in data and not data.startswith(b"HTTP/1.1 200")
    client = Client.to(server)
    (reply,) = client.wait(client.get("/"))
    assert reply.status == 200 and bytes(reply.data) == b"hello"


def test_a_body_larger_than_the_windows_streams_through_with_flow_control(serve):
    server = h2c(serve)
    body = os.urandom(3 * 1024 * 1024)  # past the 256 KiB stream and 1 MiB connection windows
    client = Client.to(server)
    stream = client.get(
        "/env", method="POST", body=body, headers=[("content-length", str(len(body)))]
    )
    (reply,) = client.wait(stream, timeout=30)
    payload = environ_of(reply)
    import hashlib

    assert payload["body_length"] == len(body)
    assert payload["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert payload["environ"]["CONTENT_LENGTH"] == str(len(body))
    # without a content-length the body is read to the end of the stream
    stream = client.get("/env", method="POST", body=b"abc" * 1000)
    (reply,) = client.wait(stream)
    assert environ_of(reply)["body_length"] == 3000
    client.close()


def test_an_app_that_never_reads_is_not_made_to_buffer_the_upload(serve):
    server = h2c(
        serve,
        "--http2-initial-stream-window",
        "64KiB",
        "--http2-initial-connection-window",
        "64KiB",
    )
    client = Client.to(server)
    stream = client.get(
        "/noread", method="POST", end=False, headers=[("content-length", str(10 * 1024 * 1024))]
    )
    # wizgy grants the first window only: the client can never send more than 64 KiB
    sent = 0
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not client.replies[stream].ended:
        window = min(client.conn.local_flow_control_window(stream), 16384)
        if window > 0 and client.replies[stream].reset is None:
            client.conn.send_data(stream, b"z" * window)
            client.flush()
            sent += window
        client.pump(0.2)
    reply = client.replies[stream]
    assert reply.status == 200 and bytes(reply.data) == b"no read"
    assert sent <= 65535, sent
    # the response is complete and the body is not: wizgy tells the client to stop sending
    deadline = time.monotonic() + 5
    while reply.reset is None and time.monotonic() < deadline:
        client.pump(0.2)
    assert reply.reset is not None
    client.close()


def test_many_streams_on_one_connection_run_concurrently(serve):
    server = h2c(serve, "--threads", "32")
    client = Client.to(server)
    started = time.monotonic()
    streams = [client.get("/sleep?s=0.5") for _ in range(30)]
    replies = client.wait(*streams, timeout=20)
    elapsed = time.monotonic() - started
    assert all(r.status == 200 and r.data.startswith(b"slept") for r in replies)
    assert elapsed < 0.5 * 30 / 4, f"30 half-second streams took {elapsed:.1f}s"
    client.close()


def test_responses_lengths_files_and_connection_specific_fields(serve, tmp_path):
    server = h2c(serve)
    client = Client.to(server)
    big = client.get("/big?n=1000000")
    head = client.get("/", method="HEAD")
    short = client.get("/length?declared=100&sent=10")
    long_ = client.get("/length?declared=10&sent=100")
    fields = client.get("/headers")
    path = tmp_path / "blob"
    path.write_bytes(os.urandom(200_000))
    wrapped = client.get(f"/file?path={path}")
    client.wait(big, head, short, long_, fields, wrapped, timeout=20)
    r = client.replies
    assert r[big].status == 200 and len(r[big].data) == 1_000_000
    assert (
        r[head].status == 200 and r[head].data == b"" and r[head].headers["content-length"] == "5"
    )
    # fewer bytes than promised: a reset, never a response that looks complete
    assert r[short].reset is not None and not r[short].ended
    assert bytes(r[long_].data) == b"y" * 10 and r[long_].ended
    assert r[fields].status == 201 and r[fields].headers["x-seen"] == "1"
    assert "proxy-connection" not in r[fields].headers
    assert bytes(r[wrapped].data) == path.read_bytes()
    client.close()


def test_static_files_over_http2(serve, tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_bytes(b"<h1>static</h1>")
    (site / "app.js").write_bytes(b"x" * 100_000)
    server = h2c(serve, "--static", f"/={site}")
    client = Client.to(server)
    index, script, missing = client.get("/"), client.get("/app.js"), client.get("/nothere")
    client.wait(index, script, missing)
    assert bytes(client.replies[index].data) == b"<h1>static</h1>"
    assert client.replies[index].headers["content-type"].startswith("text/html")
    assert len(client.replies[script].data) == 100_000
    etag = client.replies[script].headers["etag"]
    again = client.get("/app.js", headers=[("if-none-match", etag)])
    (reply,) = client.wait(again)
    assert reply.status == 304 and reply.data == b""
    # not a file: the app answers
    assert bytes(client.replies[missing].data) == b"hello"
    client.close()


def test_a_content_length_that_data_contradicts_is_a_stream_error(serve):
    server = h2c(serve)
    client = Client.to(server)
    stream = client.conn.get_next_available_stream_id()
    client.conn.send_headers(
        stream,
        [
            (":method", "POST"),
            (":path", "/env"),
            (":scheme", "http"),
            (":authority", "x"),
            ("content-length", "10"),
        ],
    )
    client.replies[stream] = Reply()
    client.flush()
    # h2's client checks the length too: write the DATA frame past it by hand
    frame = DataFrame(stream, data=b"a" * 20, flags=["END_STREAM"])
    client.sock.sendall(frame.serialize())
    deadline = time.monotonic() + 10
    while client.replies[stream].reset is None and time.monotonic() < deadline:
        try:
            client.pump(0.5)
        except h2.exceptions.ProtocolError:
            break
    assert client.replies[stream].reset is not None or client.goaway is not None
    # the worker serves on
    other = Client.to(server)
    (reply,) = other.wait(other.get("/"))
    assert reply.status == 200


def test_a_reset_stream_cancels_its_exchange_and_close_is_called(serve, tmp_path):
    server = h2c(serve)
    marker = tmp_path / "closed"
    client = Client.to(server)
    stream = client.get(f"/stream?marker={marker}")
    deadline = time.monotonic() + 10
    while not client.replies[stream].data and time.monotonic() < deadline:
        client.pump(0.5)
    assert client.replies[stream].data, "no data before the reset"
    client.conn.reset_stream(stream, h2.errors.ErrorCodes.CANCEL)
    client.flush()
    deadline = time.monotonic() + 10
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.read_text() == "closed"
    (reply,) = client.wait(client.get("/"))
    assert reply.status == 200
    client.close()


def test_request_timeout_per_stream_and_access_log_lines(serve, tmp_path):
    log = tmp_path / "access.log"
    server = h2c(serve, "--request-timeout", "1", "--access-log", str(log), "--threads", "4")
    client = Client.to(server)
    slow, fast = client.get("/sleep?s=3"), client.get("/?q=1")
    client.wait(slow, fast, timeout=10)
    assert client.replies[slow].status == 504
    assert client.replies[fast].status == 200
    deadline = time.monotonic() + 5
    while log.read_text().count("\n") < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    text = log.read_text()
    assert '"GET /?q=1 HTTP/2" 200 5 ' in text, text
    assert '"GET /sleep?s=3 HTTP/2" 504 ' in text, text
    client.close()


def test_max_requests_counts_streams(serve):
    server = h2c(serve, "--workers", "1", "--max-requests", "5")
    pids = set()
    for _ in range(4):
        client = Client.to(server)
        streams = [client.get("/env") for _ in range(5)]
        for reply in client.wait(*streams):
            if reply.ended:
                pids.add(environ_of(reply)["pid"])
        client.close()
        time.sleep(0.3)
    assert len(pids) >= 2, f"20 streams at --max-requests 5 all ran in {pids}"


def frames(data: bytes):
    """(type, flags, stream, payload) of each whole frame in ``data``."""
    i = 0
    while i + 9 <= len(data):
        length = int.from_bytes(data[i : i + 3], "big")
        if i + 9 + length > len(data):
            return
        stream = int.from_bytes(data[i + 5 : i + 9], "big") & 0x7FFFFFFF
        yield data[i + 3], data[i + 4], stream, data[i + 9 : i + 9 + length]
        i += 9 + length


def test_graceful_stop_sends_goaway_and_finishes_streams_in_flight(serve):
    # read frame by frame: the h2 package treats the first GOAWAY as the end of everything,
    # while RFC 9113 §6.8 has streams up to its last ID go on
    server = h2c(serve, "--graceful-timeout", "10")
    sock = raw_h2(server)
    sock.sendall(
        HeadersFrame(
            1, data=headers_block("/sleep?s=1.5"), flags=["END_HEADERS", "END_STREAM"]
        ).serialize()
    )
    time.sleep(0.3)
    stopped_at = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    # a new connection is refused while the stream goes on (the listener is closed)
    deadline = time.monotonic() + 3
    refused = False
    while time.monotonic() < deadline and not refused:
        try:
            socket.create_connection(server.addr, timeout=1).close()
            time.sleep(0.05)
        except OSError:
            refused = True
    assert refused
    # h2's graceful close is GOAWAY, PING, and the final GOAWAY once the PING is answered
    data = b""
    closed = False
    acked = 0
    deadline = time.monotonic() + 8
    while not closed and time.monotonic() < deadline:
        more, closed = drain(sock, 0.3)
        data += more
        pings = [p for kind, flags, _, p in frames(data) if kind == 0x6 and not flags & 0x1]
        for payload in pings[acked:]:
            sock.sendall(PingFrame(0, opaque_data=payload, flags=["ACK"]).serialize())
        acked = len(pings)
    seen = list(frames(data))
    goaways = [payload for kind, _, _, payload in seen if kind == 0x7]
    assert goaways, seen
    last_ids = [int.from_bytes(p[:4], "big") & 0x7FFFFFFF for p in goaways]
    assert last_ids[-1] >= 1 and all(int.from_bytes(p[4:8], "big") == 0 for p in goaways)
    body = b"".join(p for kind, _, s, p in seen if kind == 0x0 and s == 1)
    ended = any(kind == 0x0 and flags & 0x1 and s == 1 for kind, flags, s, _ in seen)
    assert body.startswith(b"slept") and ended, seen
    assert closed
    assert server.proc.wait(10) == 0
    assert time.monotonic() - stopped_at < 8


# --- the PEP 3333 and framework checks, over h2c ------------------------------------------------


def test_the_wsgiref_validator_passes_every_route_over_h2c(serve):
    server = serve("pep_validated:app", "--threads", "4")
    client = Client.to(server)
    get = client.get("/get?a=1")
    post = client.get("/post", method="POST", body=b"p" * 100_000)
    lines = client.get("/post-lines", method="POST", body=b"one\ntwo\nthree\n")
    stream = client.get("/stream")
    write = client.get("/write")
    head = client.get("/head", method="HEAD")
    client.wait(get, post, lines, stream, write, head)
    r = client.replies
    assert bytes(r[get].data) == b"validated-get"
    assert bytes(r[post].data) == b"p" * 100_000
    assert r[lines].status == 200
    assert r[stream].status == 200 and r[stream].data
    assert bytes(r[write].data) == b"written;returned"
    assert r[head].status == 200 and r[head].data == b""
    client.close()
    time.sleep(0.3)  # a never-closed iterable is reported when it is collected
    log = server.log()
    assert not any(w in log for w in ("Warning", "Traceback", "AssertionError", "garbage")), log


@pytest.mark.parametrize("name", ["flask", "django", "pyramid", "bottle", "falcon"])
def test_frameworks_serve_json_forms_and_errors_over_h2c(serve, name):
    from urllib.parse import urlencode

    server = serve(f"fw_{name}:app", "--threads", "4")
    client = Client.to(server)
    fields = {"name": "Zoë & co = 100%", "n": "42"}
    body = urlencode(fields).encode()
    json_ = client.get("/json")
    form = client.get(
        "/form",
        method="POST",
        body=body,
        headers=[
            ("content-type", "application/x-www-form-urlencoded"),
            ("content-length", str(len(body))),
        ],
    )
    boom = client.get("/boom")
    missing = client.get("/missing")
    client.wait(json_, form, boom, missing)
    r = client.replies
    assert r[json_].status == 200 and json.loads(r[json_].data) == {"framework": name, "ok": True}
    assert r[form].status == 200 and json.loads(r[form].data) == fields
    assert r[boom].status == 500
    assert r[missing].status == 404
    (again,) = client.wait(client.get("/json"))
    assert again.status == 200
    client.close()


# --- TLS, curl, nghttp, a browser ---------------------------------------------------------------


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    from test_tls import Pki

    pki = Pki(tmp_path_factory.mktemp("h2pki"))
    chain, key, _ = pki.server("h2-server")
    return pki, chain, key


def serve_h2_tls(serve, cert, *options, **kwargs):
    _, chain, key = cert
    return serve(APP, "--certfile", str(chain), "--keyfile", str(key), *options, **kwargs)


def test_alpn_h2_over_tls_with_the_tls_environ(serve, cert):
    pki = cert[0]
    server = serve_h2_tls(serve, cert)
    ctx = ssl.create_default_context(cafile=pki.path("root.pem"))
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    sock = ctx.wrap_socket(
        socket.create_connection(server.addr, timeout=10), server_hostname="localhost"
    )
    assert sock.selected_alpn_protocol() == "h2"
    client = Client(sock)
    (reply,) = client.wait(client.get("/env"))
    env = environ_of(reply)["environ"]
    assert env["SERVER_PROTOCOL"] == "HTTP/2"
    assert env["wsgi.url_scheme"] == "https" and env["HTTPS"] == "on"
    assert env["SSL_PROTOCOL"] == "TLSv1.3"
    client.close()


def curl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["curl", "-sS", *args], capture_output=True, text=True, timeout=30)


def test_curl_over_tls_and_prior_knowledge(serve, cert):
    pki = cert[0]
    server = serve_h2_tls(serve, cert)
    out = curl(
        "--http2", "--cacert", pki.path("root.pem"), "-w", "\n%{http_version}", f"{server.url}/"
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == "hello\n2"
    plain = serve(APP)
    out = curl(
        "--http2-prior-knowledge", "-w", "\n%{http_version}", "-d", "x=1", f"{plain.url}/env"
    )
    assert out.returncode == 0, out.stderr
    body, version = out.stdout.rsplit("\n", 1)
    assert version == "2"
    assert json.loads(body)["environ"]["CONTENT_LENGTH"] == "3"


@pytest.mark.skipif(NGHTTP is None, reason="nghttp not installed (make sysdeps)")
def test_nghttp_fetches_concurrent_streams(serve):
    server = serve(APP)
    out = subprocess.run(
        [NGHTTP, "-n", "-s", "-m", "20", f"{server.url}/big?n=100000"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("/big?n=100000") >= 20 or "20 requests" in out.stdout or out.stdout


@pytest.mark.skipif(H2LOAD is None, reason="h2load not installed (make sysdeps)")
def test_h2load_gets_every_response(serve):
    server = serve(APP)
    out = subprocess.run(
        [H2LOAD, "-n", "2000", "-c", "8", "-m", "10", f"{server.url}/"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "2000 succeeded, 0 failed, 0 errored" in out.stdout, out.stdout
    assert "status codes: 2000 2xx" in out.stdout, out.stdout


CHROMIUM = shutil.which("chromium")


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (make sysdeps)")
def test_a_browser_loads_a_page_over_http2(serve, cert, tmp_path):
    from test_static_browser import PNG

    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_bytes(
        b'<!doctype html><html><head><link rel="stylesheet" href="/s/site.css"></head>'
        b'<body><h1 id="t">over h2</h1><img src="/s/logo.png"></body></html>'
    )
    (site / "site.css").write_bytes(b"h1 { color: #123456 }\n")
    (site / "logo.png").write_bytes(PNG)
    log = tmp_path / "access.log"
    server = serve_h2_tls(serve, cert, "--static", f"/s={site}", "--access-log", str(log))
    argv = [
        CHROMIUM,
        "--headless",
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
        "--ignore-certificate-errors",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    if os.geteuid() == 0:
        argv.append("--no-sandbox")
    argv += ["--dump-dom", f"https://localhost:{server.port}/s/index.html"]
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        raise
    assert '<h1 id="t">over h2</h1>' in out.decode()
    deadline = time.monotonic() + 5
    while (
        "logo.png" not in (log.read_text() if log.exists() else "") and time.monotonic() < deadline
    ):
        time.sleep(0.05)
    text = log.read_text()
    for path in ("/s/index.html", "/s/site.css", "/s/logo.png"):
        assert f'"GET {path} HTTP/2" 200 ' in text, text


# --- attacks ------------------------------------------------------------------------------------


def raw_h2(server) -> socket.socket:
    """A connection past the preface and SETTINGS, for writing hostile frames by hand."""
    sock = socket.create_connection(server.addr, timeout=10)
    sock.sendall(PREFACE + SettingsFrame(0).serialize())
    return sock


def headers_block(path: str = "/", extra=()) -> bytes:
    return Encoder().encode(
        [(":method", "GET"), (":path", path), (":scheme", "http"), (":authority", "x"), *extra]
    )


def drain(sock: socket.socket, seconds: float) -> tuple[bytes, bool]:
    """What wizgy sends within ``seconds``, and whether it closed the connection."""
    data = b""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        sock.settimeout(max(0.001, min(0.2, deadline - time.monotonic())))
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        except ConnectionResetError:
            return data, True
        if not chunk:
            return data, True
        data += chunk
    return data, False


def goaway_code(data: bytes) -> Optional[int]:
    """The error code of the first GOAWAY frame in ``data`` (frame type 0x7), if any."""
    i = 0
    while i + 9 <= len(data):
        length = int.from_bytes(data[i : i + 3], "big")
        kind = data[i + 3]
        if kind == 0x7 and i + 9 + 8 <= len(data):
            return int.from_bytes(data[i + 13 : i + 17], "big")
        i += 9 + length
    return None


ENHANCE_YOUR_CALM = 0xB
PROTOCOL_ERROR = 0x1


def still_serves(server) -> None:
    client = Client.to(server)
    (reply,) = client.wait(client.get("/"))
    assert reply.status == 200 and bytes(reply.data) == b"hello"
    client.close()


def test_rapid_reset_ends_in_goaway_and_the_worker_serves_on(serve):
    server = h2c(serve, "--threads", "32")
    sock = raw_h2(server)
    frames = bytearray()
    for i in range(500):
        stream = 1 + 2 * i
        frames += HeadersFrame(
            stream, data=headers_block("/sleep?s=0.3"), flags=["END_HEADERS", "END_STREAM"]
        ).serialize()
        frames += RstStreamFrame(stream, error_code=0x8).serialize()
    try:
        sock.sendall(bytes(frames))
    except (BrokenPipeError, ConnectionResetError):
        pass
    data, closed = drain(sock, 5)
    assert goaway_code(data) == ENHANCE_YOUR_CALM, data[:200]
    sock.close()
    still_serves(server)
    # paced, so that wizgy accepts each stream before its reset: the streams are gone for
    # h2, but their exchanges still run, and wizgy counts those
    sock = raw_h2(server)
    encoder = Encoder()
    data = b""
    for i in range(200):
        stream = 1 + 2 * i
        block = encoder.encode(
            [(":method", "GET"), (":path", "/sleep?s=3"), (":scheme", "http"), (":authority", "x")]
        )
        try:
            sock.sendall(
                HeadersFrame(stream, data=block, flags=["END_HEADERS", "END_STREAM"]).serialize()
            )
            more, _ = drain(sock, 0.02)
            sock.sendall(RstStreamFrame(stream, error_code=0x8).serialize())
        except (BrokenPipeError, ConnectionResetError):
            break
        data += more
        if goaway_code(data) is not None:
            break
    more, _ = drain(sock, 3)
    assert goaway_code(data + more) == ENHANCE_YOUR_CALM
    # wizgy's count, or (when the machine is slow and a reset overtakes the accept) h2's own
    # bound on reset streams not yet accepted: either way ENHANCE_YOUR_CALM
    assert (
        "reset streams faster than their exchanges end" in server.log()
        or "pending-accept streams reached limit" in server.log()
    ), server.log()
    # the cancelled exchanges waiting for a thread were dropped, not run: the app slept for
    # at most the first 32 (one round of threads), and the worker answers at once
    started = time.monotonic()
    sock.close()
    still_serves(server)
    assert time.monotonic() - started < 2.5


def test_a_continuation_flood_is_refused(serve):
    server = h2c(serve)
    sock = raw_h2(server)
    sock.sendall(HeadersFrame(1, data=headers_block()).serialize())  # no END_HEADERS
    junk = Encoder().encode([("x-flood", "a" * 1000)])
    sent = 0
    try:
        for _ in range(5000):
            sock.sendall(ContinuationFrame(1, data=junk).serialize())
            sent += 1
    except (BrokenPipeError, ConnectionResetError):
        pass
    data, closed = drain(sock, 5)
    assert closed or goaway_code(data) is not None
    assert sent < 5000 or goaway_code(data) is not None
    sock.close()
    still_serves(server)


def test_an_hpack_bomb_is_bounded(serve):
    server = h2c(serve)
    pid = worker_pid(server)
    before = rss_kib(pid)
    encoder = Encoder()
    # one 4 KiB field into the dynamic table, then the same index again and again: a tiny
    # block that decodes to megabytes
    first = encoder.encode([("x-bomb", "b" * 4000)])
    again = encoder.encode([("x-bomb", "b" * 4000)])
    block = (
        Encoder().encode(
            [(":method", "GET"), (":path", "/"), (":scheme", "http"), (":authority", "x")]
        )
        + first
        + again * 4000
    )
    sock = raw_h2(server)
    try:
        sock.sendall(HeadersFrame(1, data=block[:16000], flags=[]).serialize())
        rest = block[16000:]
        while rest:
            piece, rest = rest[:16000], rest[16000:]
            flags = [] if rest else ["END_HEADERS"]
            sock.sendall(ContinuationFrame(1, data=piece, flags=flags).serialize())
    except (BrokenPipeError, ConnectionResetError):
        pass
    data, _ = drain(sock, 3)
    assert b"hello" not in data
    sock.close()
    still_serves(server)
    assert rss_kib(pid) - before < 20_000


@pytest.mark.parametrize("kind", ["ping", "settings"])
def test_ping_and_settings_floods_leave_memory_flat(serve, kind):
    server = h2c(serve)
    pid = worker_pid(server)
    before = rss_kib(pid)
    sock = raw_h2(server)
    frame = (
        PingFrame(0, opaque_data=b"12345678") if kind == "ping" else SettingsFrame(0)
    ).serialize()
    batch = frame * 1000
    deadline = time.monotonic() + 5
    sent = 0
    sock.settimeout(0.5)
    try:
        # never reading: wizgy's answers pile up on its side unless it stops reading
        while sent < 200_000 and time.monotonic() < deadline:
            sock.sendall(batch)
            sent += 1000
    except (socket.timeout, BrokenPipeError, ConnectionResetError):
        pass
    grown = rss_kib(pid) - before
    sock.close()
    still_serves(server)
    assert grown < 20_000, f"{kind} flood of {sent} frames grew the worker by {grown} KiB"


def test_an_empty_data_frame_flood_ends_in_goaway(serve):
    server = h2c(serve)
    sock = raw_h2(server)
    sock.sendall(
        HeadersFrame(
            1, data=headers_block("/noread", [("content-length", "100")]), flags=["END_HEADERS"]
        ).serialize()
    )
    empty = DataFrame(1, data=b"").serialize() * 1000
    try:
        for _ in range(100):
            sock.sendall(empty)
    except (BrokenPipeError, ConnectionResetError):
        pass
    data, closed = drain(sock, 5)
    assert goaway_code(data) == ENHANCE_YOUR_CALM or closed, data[:200]
    sock.close()
    still_serves(server)


def test_a_zero_window_reader_is_reset_after_the_write_timeout(serve):
    server = h2c(serve, "--write-timeout", "1")
    client = Client.to(server, settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0})
    stream = client.get("/big?n=1000000")
    started = time.monotonic()
    # never acknowledge: pump without window updates for the stream
    deadline = started + 10
    while client.replies[stream].reset is None and time.monotonic() < deadline:
        client.sock.settimeout(0.5)
        try:
            data = client.sock.recv(65536)
        except socket.timeout:
            continue
        if not data:
            break
        for event in client.conn.receive_data(data):
            if isinstance(event, h2.events.StreamReset):
                client.replies[stream].reset = event.error_code
            elif isinstance(event, h2.events.ResponseReceived):
                client.replies[stream].headers = dict(event.headers)
        client.flush()
    assert client.replies[stream].reset is not None, "the stalled stream was never reset"
    assert time.monotonic() - started < 8
    still_serves(server)
    client.close()


def test_a_stream_id_lower_than_the_last_is_a_protocol_error(serve):
    server = h2c(serve)
    sock = raw_h2(server)
    encoder = Encoder()
    for stream in (5, 3):
        block = encoder.encode(
            [(":method", "GET"), (":path", "/"), (":scheme", "http"), (":authority", "x")]
        )
        sock.sendall(
            HeadersFrame(stream, data=block, flags=["END_HEADERS", "END_STREAM"]).serialize()
        )
    data, _ = drain(sock, 3)
    assert goaway_code(data) == PROTOCOL_ERROR, data[:200]
    sock.close()
    still_serves(server)


def test_header_limits_apply_per_stream(serve):
    server = h2c(serve, "--limit-request-fields", "10", "--limit-request-field-size", "200")
    client = Client.to(server)
    many = client.get("/", headers=[(f"x-{i}", "v") for i in range(20)])
    long_ = client.get("/", headers=[("x-long", "v" * 500)])
    ok = client.get("/", headers=[("x-fine", "v")])
    client.wait(many, long_, ok)
    assert client.replies[many].status == 431
    assert client.replies[long_].status == 431
    assert client.replies[ok].status == 200
    client.close()


IDLE_H2_HELD = 300
IDLE_H2_KIB = 64


def test_idle_http2_connections_cost_at_most_64_kib_each(serve):
    """Idle h2c connections (SETTINGS exchanged, one stream served) cost the worker at most
    IDLE_H2_KIB of RSS each; closed, they give their descriptors back."""
    server = h2c(serve, "--keep-alive", "60s", "--threads", "4")
    pid = worker_pid(server)
    fds_before = len(os.listdir(f"/proc/{pid}/fd"))
    rss_before = rss_kib(pid)
    held: list[Client] = []
    try:
        for _ in range(IDLE_H2_HELD):
            client = Client.to(server)
            held.append(client)
            (reply,) = client.wait(client.get("/"))
            assert bytes(reply.data) == b"hello"
        time.sleep(0.5)
        per_connection = (rss_kib(pid) - rss_before) / IDLE_H2_HELD
        assert len(os.listdir(f"/proc/{pid}/fd")) >= fds_before + IDLE_H2_HELD - 10
    finally:
        for client in held:
            client.close()
    print(f"\n{IDLE_H2_HELD} idle HTTP/2 connections: {per_connection:.1f} KiB of worker RSS each")
    assert per_connection <= IDLE_H2_KIB, f"{per_connection:.1f} KiB per idle HTTP/2 connection"
    deadline = time.monotonic() + 10
    while len(os.listdir(f"/proc/{pid}/fd")) > fds_before + 2:
        assert time.monotonic() < deadline, "descriptors stayed behind"
        time.sleep(0.1)
