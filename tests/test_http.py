"""HTTP/1.x protocol behaviour over raw sockets: connection management, pipelining, framing,
100-continue, standard headers and the handling of malformed requests."""

from __future__ import annotations

import re
import socket
import time
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

import pytest
from helpers import IncompleteResponse, Reader, connect, read_until_closed, request

HTTP_DATE = re.compile(
    r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} "
    r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d{2}:\d{2}:\d{2} GMT$"
)


def get(path: str, *extra: str, version: str = "HTTP/1.1") -> bytes:
    """A GET request head with ``Host`` and any extra ``Name: value`` header lines."""
    lines = [f"GET {path} {version}", "Host: localhost", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def connection_tokens(resp) -> set[str]:
    return {
        token.strip().lower()
        for value in resp.header_all("connection")
        for token in value.split(",")
        if token.strip()
    }


def drain(reader: Reader, timeout: float = 3.0) -> tuple[bytes, bool]:
    """Every further byte until the peer closes (EOF or reset) or ``timeout``: (bytes, closed)."""
    out, reader.buf = reader.buf, b""
    rest, closed = read_until_closed(reader.sock, timeout)
    return out + rest, closed


# --- keep-alive and connection close -------------------------------------------------------


def test_http11_keeps_the_connection_open_by_default_and_answers_two_requests(serve):
    server = serve("http_apps:path", "--threads", "2")
    with connect(server.addr) as sock:
        reader = Reader(sock)
        sock.sendall(get("/one"))
        first = reader.response()
        sock.sendall(get("/two"))
        second = reader.response()
    assert (first.status, first.body) == (200, b"GET /one")
    assert (second.status, second.body) == (200, b"GET /two")
    assert "close" not in connection_tokens(first)
    assert "close" not in connection_tokens(second)


def test_connection_close_is_answered_with_connection_close_and_the_socket_closes(serve):
    server = serve("http_apps:path", "--threads", "2")
    with connect(server.addr) as sock:
        reader = Reader(sock)
        sock.sendall(get("/bye", "Connection: close"))
        resp = reader.response()
        assert (resp.status, resp.body) == (200, b"GET /bye")
        assert "close" in connection_tokens(resp)
        assert reader.is_closed(5.0)


def test_http10_closes_the_connection_by_default(serve):
    server = serve("http_apps:path", "--threads", "2")
    with connect(server.addr) as sock:
        reader = Reader(sock)
        sock.sendall(get("/old", version="HTTP/1.0"))
        resp = reader.response()
        assert (resp.status, resp.body) == (200, b"GET /old")
        assert "keep-alive" not in connection_tokens(resp)
        assert reader.is_closed(5.0)


def test_http10_with_connection_keep_alive_stays_open_and_says_keep_alive(serve):
    server = serve("http_apps:path", "--threads", "2")
    with connect(server.addr) as sock:
        reader = Reader(sock)
        sock.sendall(get("/a", "Connection: keep-alive", version="HTTP/1.0"))
        first = reader.response()
        assert (first.status, first.body) == (200, b"GET /a")
        assert "keep-alive" in connection_tokens(first)
        assert first.header("content-length") == "6"
        sock.sendall(get("/b", "Connection: keep-alive", version="HTTP/1.0"))
        second = reader.response()
        assert (second.status, second.body) == (200, b"GET /b")
        assert "keep-alive" in connection_tokens(second)


def test_http10_response_without_content_length_is_close_delimited_not_chunked(serve):
    server = serve("http_apps:nolength", "--threads", "2")
    with connect(server.addr) as sock:
        reader = Reader(sock)
        sock.sendall(get("/", version="HTTP/1.0"))
        resp = reader.response()
    assert resp.status == 200
    assert resp.header("transfer-encoding") is None
    assert resp.body == b"hello chunked world"


# --- pipelining ----------------------------------------------------------------------------


@pytest.mark.parametrize("count", [3, 10])
def test_pipelined_requests_sent_in_one_write_are_all_answered_in_order(serve, count):
    server = serve("http_apps:path", "--threads", "4")
    paths = [f"/req{i}?n={i}" for i in range(count)]
    with connect(server.addr) as sock:
        sock.sendall(b"".join(get(p) for p in paths))
        reader = Reader(sock)
        bodies = [reader.response().body for _ in paths]
        assert reader.buf == b""
    assert bodies == [f"GET {p}".encode() for p in paths]


# --- HEAD and response framing -------------------------------------------------------------


def test_head_sends_the_same_headers_as_get_but_no_body(serve):
    server = serve("http_apps:fixed", "--threads", "2")
    get_resp = request(server.addr, "GET", "/")
    with connect(server.addr) as sock:
        reader = Reader(sock)
        sock.sendall(b"HEAD / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        head_resp = reader.response("HEAD")
        # The next bytes on the connection must be the next response, not a HEAD body.
        sock.sendall(get("/", "Connection: close"))
        after = reader.response()
    assert get_resp.body == b"hello world"
    assert head_resp.status == 200
    assert head_resp.header("content-length") == "11"

    def comparable(resp):
        return [(k.lower(), v) for k, v in resp.headers if k.lower() not in ("date", "connection")]

    assert comparable(head_resp) == comparable(get_resp)
    assert after.status == 200 and after.body == b"hello world"


def test_head_to_an_app_without_content_length_sends_no_body_bytes(serve):
    server = serve("http_apps:nolength", "--threads", "2")
    with connect(server.addr) as sock:
        reader = Reader(sock)
        sock.sendall(b"HEAD / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        resp = reader.response("HEAD")
        rest, closed = drain(reader)
    assert resp.status == 200
    assert rest == b""
    assert closed


def test_response_without_content_length_is_sent_chunked_on_http11(serve):
    server = serve("http_apps:nolength", "--threads", "2")
    with connect(server.addr) as sock:
        reader = Reader(sock)
        sock.sendall(get("/"))
        resp = reader.response()
        # still usable afterwards: the chunked framing ended the response, not a close
        sock.sendall(get("/", "Connection: close"))
        again = reader.response()
    assert resp.status == 200
    assert resp.chunked
    assert resp.header("content-length") is None
    assert resp.body == b"hello chunked world"
    # (the app also yields b"": an empty chunk on the wire would have ended the body early)
    assert again.body == b"hello chunked world"


# --- chunked request bodies ------------------------------------------------------------------

CHUNKED_HEAD = (
    b"POST /chunked HTTP/1.1\r\nHost: localhost\r\n"
    b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
)
CHUNKED_BODY = (
    b"5;name=value\r\nhello\r\n"
    b"a\r\n, world!!!\r\n"  # lowercase hex: 10 bytes
    b"1f;flag\r\n" + b"x" * 31 + b"\r\n"  # lowercase hex with an extension: 31 bytes
    b"0\r\n\r\n"
)
CHUNKED_DECODED = "hello, world!!!" + "x" * 31


def test_chunked_request_body_with_extensions_and_lowercase_hex_is_decoded(serve):
    server = serve("echo:app", "--threads", "2")
    with connect(server.addr) as sock:
        sock.sendall(CHUNKED_HEAD + CHUNKED_BODY)
        resp = Reader(sock).response()
    assert resp.status == 200
    payload = resp.json()
    assert payload["body"] == CHUNKED_DECODED
    assert "CONTENT_LENGTH" not in payload["environ"]


def test_chunked_request_body_sent_byte_by_byte_is_decoded(serve):
    server = serve("echo:app", "--threads", "2")
    with connect(server.addr) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for byte in CHUNKED_HEAD + CHUNKED_BODY:
            sock.sendall(bytes([byte]))
            time.sleep(0.001)
        resp = Reader(sock).response()
    assert resp.status == 200
    assert resp.json()["body"] == CHUNKED_DECODED


# --- Expect: 100-continue --------------------------------------------------------------------


def test_expect_100_continue_gets_one_interim_response_and_the_final_one_after_the_body(serve):
    server = serve("echo:app", "--threads", "2")
    with connect(server.addr) as sock:
        reader = Reader(sock)
        sock.sendall(
            b"POST /up HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n"
            b"Expect: 100-continue\r\nConnection: close\r\n\r\n"
        )
        assert reader.read_until(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
        # Nothing else may arrive before the body is sent: the app is still waiting for it.
        assert not reader.is_closed(0.5)
        assert reader.buf == b""
        sock.sendall(b"hello")
        resp = reader.response()
        rest, _ = drain(reader)
    assert resp.status == 200
    assert resp.json()["body"] == "hello"
    assert b"100 Continue" not in rest
    assert rest == b""


def test_expect_100_continue_is_not_sent_when_the_app_never_reads_the_body(serve):
    server = serve("http_apps:noread", "--threads", "2")
    with connect(server.addr) as sock:
        reader = Reader(sock)
        sock.sendall(
            b"POST /skip HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n"
            b"Expect: 100-continue\r\nConnection: close\r\n\r\n"
        )
        status_line = reader.read_until(b"\r\n")
        rest, _ = drain(reader)
    assert status_line.startswith(b"HTTP/1.1 200 "), status_line
    assert b"100 Continue" not in rest
    assert rest.endswith(b"POST /skip")


# --- standard response headers ---------------------------------------------------------------


def test_every_response_has_a_date_header_in_http_date_format(serve):
    server = serve("http_apps:fixed", "--threads", "2")
    resp = request(server.addr, "GET", "/")
    dates = resp.header_all("date")
    assert len(dates) == 1, resp.headers
    assert HTTP_DATE.match(dates[0]), dates[0]
    when = parsedate_to_datetime(dates[0])
    assert abs((datetime.now(timezone.utc) - when).total_seconds()) < 120


def test_every_response_has_server_wizgy(serve):
    server = serve("http_apps:fixed", "--threads", "2")
    resp = request(server.addr, "GET", "/")
    assert resp.header_all("server") == ["wizgy"]


def test_an_app_supplied_server_header_wins_and_is_not_duplicated(serve):
    server = serve("http_apps:server_header", "--threads", "2")
    resp = request(server.addr, "GET", "/")
    assert resp.status == 200
    assert resp.header_all("server") == ["custom/1.0"]


# --- malformed requests ----------------------------------------------------------------------

MALFORMED = {
    "bare-lf-line-endings": b"GET / HTTP/1.1\nHost: x\n\n",
    "two-different-content-lengths": (
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"
    ),
    "two-equal-content-lengths": (
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc"
    ),
    "content-length-with-transfer-encoding": (
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    ),
    "content-length-abc": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\nabc",
    "content-length-negative": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\nabc",
    "version-ftp": b"GET / FTP/1.1\r\nHost: x\r\n\r\n",
    "request-line-without-target": b"GET HTTP/1.1\r\nHost: x\r\n\r\n",
    "space-before-header-colon": b"GET / HTTP/1.1\r\nHost : x\r\n\r\n",
    "invalid-chunk-size": (
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"
    ),
}


@pytest.mark.parametrize("data", list(MALFORMED.values()), ids=list(MALFORMED))
def test_a_malformed_request_gets_400_with_connection_close_and_the_server_keeps_serving(
    serve, data
):
    server = serve("echo:app", "--threads", "2")
    with connect(server.addr) as sock:
        reader = Reader(sock)
        sock.sendall(data)
        resp = reader.response()
        assert resp.status == 400, (resp.status, resp.reason, resp.body[:200])
        assert resp.reason == "Bad Request"
        assert "close" in connection_tokens(resp)
        rest, closed = drain(reader)
        assert rest == b""
        assert closed
    after = request(server.addr, "GET", "/after")
    assert after.status == 200
    assert after.json()["environ"]["PATH_INFO"] == "/after"


def test_a_well_formed_but_unsupported_version_gets_505_and_the_connection_closes(serve):
    # RFC 9110 §15.6.6: 505 names the refusal precisely; FTP/1.1 and HTTP/111 stay 400.
    server = serve("echo:app", "--threads", "2")
    with connect(server.addr) as sock:
        reader = Reader(sock)
        sock.sendall(b"GET / HTTP/2.0\r\nHost: x\r\n\r\n")
        resp = reader.response()
        assert resp.status == 505
        assert "close" in connection_tokens(resp)
        rest, closed = drain(reader)
        assert rest == b""
        assert closed
    assert request(server.addr, "GET", "/after").status == 200


def test_a_request_pipelined_after_a_malformed_one_is_not_answered(serve):
    server = serve("http_apps:path", "--threads", "2")
    with connect(server.addr) as sock:
        reader = Reader(sock)
        sock.sendall(
            b"GET /bad HTTP/1.1\r\nHost : x\r\n\r\nGET /second HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        resp = reader.response()
        rest, closed = drain(reader)
    assert resp.status == 400
    assert b"HTTP/" not in rest
    assert b"/second" not in rest
    assert closed


# --- unread request bodies -----------------------------------------------------------------

SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.mark.parametrize("pipelined", [False, True], ids=["sequential", "pipelined"])
def test_an_unread_request_body_is_skipped_and_never_parsed_as_a_request(serve, pipelined):
    server = serve("http_apps:noread", "--threads", "2")
    first = (
        b"POST /first HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
        + f"Content-Length: {len(SMUGGLED)}\r\n\r\n".encode()
        + SMUGGLED
    )
    second = get("/second", "Connection: close")
    seen = b""
    with connect(server.addr) as sock:
        reader = Reader(sock)
        if pipelined:
            sock.sendall(first + second)
        else:
            sock.sendall(first)
        one = reader.response()
        if not pipelined:
            sock.sendall(second)
        try:
            two = reader.response()
        except (IncompleteResponse, ConnectionResetError) as exc:
            pytest.fail(f"no answer to the request after the unread body: {exc}")
        seen, _ = drain(reader)
    assert (one.status, one.body) == (200, b"POST /first")
    assert "close" not in connection_tokens(one)
    assert (two.status, two.body) == (200, b"GET /second")
    assert b"smuggled" not in one.body + two.body + seen
    assert seen == b""
