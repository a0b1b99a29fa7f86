"""wsgiref.validate.validator around real apps (tests/apps/pep_validated.py): every check the
validator makes of the server's environ, input, errors, start_response and close() must pass.

The app module turns warnings into errors, so any WSGIWarning is a 500 and a traceback; an
iterable the server never closes is reported on stderr. Each test asserts a 200 (or the
expected response) and that nothing of the kind reached the error log during its request.
"""

from __future__ import annotations

import time

import pytest
from conftest import Server, running
from helpers import Reader, Response, connect

APP = "pep_validated:app"
COMPLAINTS = ("Warning", "Traceback", "AssertionError", "garbage collected")


@pytest.fixture(scope="module")
def server():
    with running(APP, "--threads", "4") as srv:
        yield srv


def exchange(server: Server, data: bytes, method: str = "GET") -> Response:
    with connect(server.addr, timeout=10) as sock:
        sock.sendall(data)
        return Reader(sock).response(method)


def head(method: str, path: str, *extra: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: localhost", "Connection: close", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def chunked(body: bytes, size: int = 5) -> bytes:
    out = b""
    for i in range(0, len(body), size):
        piece = body[i : i + size]
        out += b"%x\r\n" % len(piece) + piece + b"\r\n"
    return out + b"0\r\n\r\n"


def assert_no_complaints(server: Server, since: int) -> None:
    """Nothing the validator (or a warning) would print appears in the log after ``since``.
    A short pause lets a never-closed iterable be garbage collected and reported first."""
    time.sleep(0.3)
    new = server.log()[since:]
    found = [word for word in COMPLAINTS if word in new]
    assert found == [], new


def test_validated_get_is_served(server):
    since = len(server.log())
    resp = exchange(server, head("GET", "/get?a=1"))
    assert resp.status == 200
    assert resp.body == b"validated-get"
    assert_no_complaints(server, since)


def test_validated_post_with_body_read_in_pieces_is_served(server):
    body = b"validated post body, read seven bytes at a time" * 20
    since = len(server.log())
    resp = exchange(
        server,
        head("POST", "/post", f"Content-Length: {len(body)}", "Content-Type: text/plain") + body,
        "POST",
    )
    assert resp.status == 200
    assert resp.body == body
    assert_no_complaints(server, since)


def test_validated_chunked_post_with_body_read_in_pieces_is_served(server):
    body = b"chunked validated body " * 30
    since = len(server.log())
    data = head("POST", "/post", "Transfer-Encoding: chunked", "Content-Type: text/plain")
    resp = exchange(server, data + chunked(body), "POST")
    assert resp.status == 200
    assert resp.body == body
    assert_no_complaints(server, since)


def test_validated_post_read_by_lines_is_served(server):
    body = b"line one\nline two\nline three\nend"
    since = len(server.log())
    resp = exchange(
        server,
        head("POST", "/post-lines", f"Content-Length: {len(body)}", "Content-Type: text/plain")
        + body,
        "POST",
    )
    assert resp.status == 200
    assert resp.body == b"line one\n|lin|e two\n|line three\n|end"
    assert_no_complaints(server, since)


def test_validated_streaming_generator_is_served(server):
    since = len(server.log())
    resp = exchange(server, head("GET", "/stream"))
    assert resp.status == 200
    assert resp.body == b"chunk-0;chunk-1;chunk-2;chunk-3;chunk-4;"
    assert_no_complaints(server, since)


def test_validated_write_callable_is_served(server):
    since = len(server.log())
    resp = exchange(server, head("GET", "/write"))
    assert resp.status == 200
    assert resp.body == b"written;returned"
    assert_no_complaints(server, since)


def test_validated_head_is_served_without_a_body(server):
    since = len(server.log())
    with connect(server.addr, timeout=10) as sock:
        sock.sendall(head("HEAD", "/head"))
        reader = Reader(sock)
        resp_head = reader.read_until(b"\r\n\r\n")
        rest = reader.read_to_close()
    assert resp_head.startswith(b"HTTP/1.1 200 ")
    assert rest == b""
    assert_no_complaints(server, since)


def test_validated_request_with_root_path_is_served(serve):
    server = serve(APP, "--threads", "2", "--root-path", "/mount")
    since = len(server.log())
    resp = exchange(server, head("GET", "/mount/get"))
    assert resp.status == 200
    assert resp.body == b"validated-get"
    assert_no_complaints(server, since)
