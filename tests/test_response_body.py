"""PEP 3333 response-iterable clauses and body framing, against tests/apps/pep_body.py."""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest
from conftest import Server, running
from helpers import Reader, Response, connect

APP = "pep_body:app"


@pytest.fixture(scope="module")
def server():
    with running(APP, "--threads", "4") as srv:
        yield srv


def build(target: str, method: str = "GET", version: str = "HTTP/1.1", close: bool = True) -> bytes:
    lines = [f"{method} {target} {version}", "Host: localhost"]
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def get(server: Server, target: str, method: str = "GET", version: str = "HTTP/1.1") -> Response:
    with connect(server.addr, timeout=10) as sock:
        sock.sendall(build(target, method, version))
        return Reader(sock).response(method)


def split_wire(server: Server, data: bytes) -> tuple[bytes, bytes]:
    """Send ``data``; return (head, every byte after it) once the server closes (10 s max)."""
    with connect(server.addr, timeout=10) as sock:
        sock.sendall(data)
        reader = Reader(sock)
        head = reader.read_until(b"\r\n\r\n")
        try:
            rest = reader.read_to_close()
        except socket.timeout:
            pytest.fail(f"connection still open 10 s after the response head {head!r}")
        return head, rest


def wait_for_file(path: Path, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    return path.exists()


def wait_for_new_log(server: Server, since: int, pattern: str, timeout: float = 5.0) -> str:
    regex = re.compile(pattern)
    deadline = time.monotonic() + timeout
    while True:
        new = server.log()[since:]
        if regex.search(new):
            return new
        if time.monotonic() > deadline:
            pytest.fail(f"{pattern!r} not logged within {timeout}s; new log:\n{new}")
        time.sleep(0.05)


def with_mark(route: str, mark: Path) -> str:
    return f"{route}?{urlencode({'mark': str(mark)})}"


# --- iterable kinds -----------------------------------------------------------------------


def test_list_of_bytes_is_sent_in_order(server):
    resp = get(server, "/list")
    assert resp.status == 200
    assert resp.body == b"list-body"


def test_tuple_of_bytes_is_sent_in_order(server):
    resp = get(server, "/tuple")
    assert resp.status == 200
    assert resp.body == b"tuple-body"


@pytest.mark.parametrize("kind", ["list", "generator"])
def test_pieces_of_every_size_arrive_in_order_at_a_slow_reader(server, kind):
    # Small pieces are copied into one buffer, larger ones written from the app's bytes with
    # writev; a reader with a small buffer that pauses forces partial writes in between.
    sizes = [1, 100, 4095, 4096, 4097, 3, 10240, 0, 70000, 7, 300000, 2, 16384, 5000, 1]
    expected = b"".join(bytes([65 + i % 26]) * size for i, size in enumerate(sizes))
    with socket.create_connection(server.addr, timeout=10) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32768)
        sock.sendall(build(f"/mixed?as={kind}"))
        time.sleep(0.3)  # let the server fill the socket and wait for room
        reader = Reader(sock)
        resp = reader.response()
    assert resp.status == 200
    if kind == "list":
        assert resp.header("Content-Length") == str(len(expected))
    else:
        assert resp.header("Transfer-Encoding") == "chunked"
    assert len(resp.body) == len(expected)
    assert resp.body == expected


def test_an_app_streaming_to_a_client_that_does_not_read_is_held_back_by_bytes(server, tmp_path):
    # Backpressure counts bytes, not chunks: with 1 MiB chunks, 128 queued events would be
    # 128 MiB held for one client. The server may hold ~0.5 MiB plus what the kernel's socket
    # buffers take (a few MiB on loopback), so the app must stop far short of its 48 MiB.
    mark = tmp_path / "produced"
    with socket.create_connection(server.addr, timeout=10) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.sendall(build(f"/produce?{urlencode({'mark': str(mark)})}"))
        assert wait_for_file(mark)
        time.sleep(1.0)
        produced = int(mark.read_text() or "0")
        print(f"chunks of 1 MiB produced while the client read nothing: {produced}")
        assert produced <= 12, f"{produced} MiB produced for a client that read nothing"
        resp = Reader(sock).response()
    assert resp.status == 200
    assert len(resp.body) == 48 << 20
    assert resp.body[-1:] == b"7" and resp.body[:1] == b"0"
    assert int(mark.read_text()) == 48


def test_a_stream_held_back_by_its_client_keeps_its_thread_to_itself(server, tmp_path):
    # Twice as many 16 MiB streams as app threads (4), to clients that read nothing at first.
    # Each stream's generator must run to its end on the thread it started on, with no other
    # request run on that thread in between: apps keep per-request state in threading.local
    # and context variables (Django's per-thread database connection under a streamed
    # queryset, Flask's stream_with_context), which a thread interleaving several requests
    # would mix up. (A build that set held-back streams aside to serve others on the same
    # thread failed this.)
    socks, bads = [], []
    try:
        for i in range(8):
            sock = socket.create_connection(server.addr, timeout=10)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            bad = tmp_path / f"bad-{i}"
            query = urlencode({"n": 256, "id": f"stream-{i}", "bad": str(bad)})
            sock.sendall(build(f"/owned?{query}"))
            socks.append(sock)
            bads.append(bad)
        time.sleep(0.5)
        expected = b"".join(bytes([i % 251]) * 65536 for i in range(256))
        for sock in socks:
            resp = Reader(sock).response()
            assert resp.status == 200
            assert resp.body == expected
    finally:
        for sock in socks:
            sock.close()
    found = [bad.read_text() for bad in bads if bad.exists()]
    assert not found, "".join(found)


def test_a_held_back_stream_cut_by_the_graceful_timeout_still_has_close_called(tmp_path):
    mark = tmp_path / "closed"
    with running(APP, "--threads", "1", "--graceful-timeout", "1s") as srv:
        with socket.create_connection(srv.addr, timeout=10) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            sock.sendall(build(f"/numbered?{urlencode({'n': 256, 'mark': str(mark)})}"))
            Reader(sock).read_until(b"\r\n\r\n")
            time.sleep(0.5)
            assert not mark.exists(), "the stream ended without its client"
            code = srv.stop(timeout=10)
        assert code == 0, srv.log()
        assert "killing" not in srv.log(), "the worker was killed instead of winding down"
    assert mark.exists(), "close() not called for the stream cut at shutdown"


def test_generator_first_chunk_reaches_the_client_before_the_generator_finishes(server, tmp_path):
    flag = tmp_path / "flag"
    with connect(server.addr, timeout=10) as sock:
        sock.sendall(build("/generator?flag=" + quote(str(flag))))
        reader = Reader(sock)
        sock.settimeout(5)
        try:
            head = reader.read_until(b"\r\n\r\n")
            reader.read_until(b"first-chunk;")
        except socket.timeout:
            pytest.fail("first chunk not received while the generator was still waiting")
        flag.touch()
        sock.settimeout(10)
        rest = reader.read_to_close()
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"second-chunk" in rest
    assert rest.endswith(b"0\r\n\r\n")


# --- close() ------------------------------------------------------------------------------


def test_close_is_called_after_a_normal_end(server, tmp_path):
    mark = tmp_path / "closed"
    resp = get(server, with_mark("/closing", mark))
    assert resp.body == b"ab"
    assert wait_for_file(mark, 5), "close() not called after the body was sent"


def test_close_of_a_list_subclass_is_called(server, tmp_path):
    # Plain lists and tuples are not asked for close(); their subclasses must be.
    mark = tmp_path / "closed"
    resp = get(server, with_mark("/closing-list", mark))
    assert resp.body == b"list"
    assert wait_for_file(mark, 5), "close() of a list subclass not called"


def test_close_is_called_when_iteration_raises(server, tmp_path):
    mark = tmp_path / "closed"
    with connect(server.addr, timeout=10) as sock:
        sock.sendall(build(with_mark("/closing-error", mark)))
        try:
            Reader(sock).read_to_close()
        except ConnectionResetError:
            pass
    assert wait_for_file(mark, 5), "close() not called after the iterable raised"


def test_close_is_called_when_the_client_disconnects(server, tmp_path):
    mark = tmp_path / "closed"
    with connect(server.addr, timeout=10) as sock:
        sock.sendall(build(with_mark("/closing-disconnect", mark)))
        reader = Reader(sock)
        reader.read_until(b"\r\n\r\n")
        reader.read_exact(100000)  # the body is streaming
    # the socket is closed now, with unread data: the server's next writes fail
    assert wait_for_file(mark, 10), "close() not called within 10 s of the client going away"


# --- what the iterable may yield ----------------------------------------------------------


def test_str_chunk_gives_500_and_a_log_line_mentioning_str(server):
    since = len(server.log())
    resp = get(server, "/str-chunk")
    assert resp.status == 500
    assert b"a str, not bytes" not in resp.body
    wait_for_new_log(server, since, r"\bstr\b")


def test_empty_chunks_from_a_generator_are_not_sent_as_chunks(server):
    resp = get(server, "/empty-chunks")
    assert resp.status == 200
    assert resp.chunked
    assert resp.body == b"ab"
    assert all(resp.chunks), resp.chunks


def test_headers_wait_for_the_first_non_empty_chunk_so_a_later_error_gives_500(server):
    resp = get(server, "/empty-then-error")
    assert resp.status == 500


# --- framing ------------------------------------------------------------------------------


def test_generator_without_content_length_is_sent_chunked_on_http_1_1(server):
    resp = get(server, "/no-length")
    assert resp.header("Transfer-Encoding") == "chunked"
    assert resp.header("Content-Length") is None
    assert resp.body == b"hello world"


def test_generator_without_content_length_is_close_delimited_on_http_1_0(server):
    head, rest = split_wire(server, build("/no-length", version="HTTP/1.0", close=False))
    assert b"transfer-encoding" not in head.lower()
    assert b"content-length" not in head.lower()
    assert rest == b"hello world"


def test_generator_without_content_length_closes_even_for_http_1_0_keep_alive(server):
    data = b"GET /no-length HTTP/1.0\r\nHost: localhost\r\nConnection: keep-alive\r\n\r\n"
    head, rest = split_wire(server, data)
    assert b"transfer-encoding" not in head.lower()
    assert rest == b"hello world"


def test_content_length_larger_than_body_closes_after_the_short_body(server):
    target = "/declared-length?" + urlencode({"declared": "100", "body": "short"})
    head, rest = split_wire(server, build(target, close=False))
    assert b"content-length: 100\r\n" in head.lower()
    assert rest == b"short"


def test_content_length_smaller_than_body_truncates_the_body(server):
    target = "/declared-length?" + urlencode({"declared": "3", "body": "abcdef"})
    head, rest = split_wire(server, build(target))
    assert b"content-length: 3\r\n" in head.lower()
    assert rest == b"abc"


# --- responses without a body -------------------------------------------------------------


@pytest.mark.parametrize("route", ["/head", "/head-generator"])
def test_head_response_has_no_body_bytes(server, route):
    head, rest = split_wire(server, build(route, method="HEAD"))
    assert head.startswith(b"HTTP/1.1 200 ")
    assert rest == b""


@pytest.mark.parametrize("code", ["204", "304"])
def test_204_and_304_responses_have_no_body_bytes(server, code):
    head, rest = split_wire(server, build(f"/no-body-status?code={code}"))
    assert head.startswith(f"HTTP/1.1 {code} ".encode())
    assert b"transfer-encoding" not in head.lower()
    assert rest == b""


# --- computed Content-Length (docs/compliance.md: a body known in full gets its length) -------


@pytest.mark.parametrize("path, body", [("/list", b"list-body"), ("/tuple", b"tuple-body")])
def test_list_or_tuple_without_content_length_gets_the_computed_length(server, path, body):
    resp = get(server, path)
    assert resp.header("Content-Length") == str(len(body))
    assert resp.header("Transfer-Encoding") is None
    assert resp.body == body


def test_list_without_content_length_keeps_an_http_1_0_keep_alive_connection(server):
    with connect(server.addr, timeout=10) as sock:
        reader = Reader(sock)
        for _ in range(2):
            sock.sendall(b"GET /list HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n")
            resp = reader.response()
            assert resp.body == b"list-body"
            assert resp.header("Connection") == "keep-alive"
