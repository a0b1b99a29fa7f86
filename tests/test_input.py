"""PEP 3333 wsgi.input clauses, against tests/apps/pep_input.py.

Every reading style is checked over both request framings: a Content-Length body and a chunked
body written by hand (chunk boundaries deliberately in the middle of lines).
"""

from __future__ import annotations

import socket
import time

import pytest
from conftest import Server, running
from helpers import Reader, connect

APP = "pep_input:app"
FRAMINGS = ["length", "chunked"]
LINES_BODY = b"first line\nsecond\n\nthird line is longer\nlast-without-newline"


@pytest.fixture(scope="module")
def server():
    with running(APP, "--threads", "4") as srv:
        yield srv


def chunked(body: bytes, size: int = 7) -> bytes:
    out = b""
    for i in range(0, len(body), size):
        piece = body[i : i + size]
        out += b"%x\r\n" % len(piece) + piece + b"\r\n"
    return out + b"0\r\n\r\n"


def request_parts(target: str, body: bytes, framing: str) -> tuple[bytes, bytes]:
    """(head, framed body) of a POST carrying ``body`` with the given framing."""
    if framing == "length":
        framing_header, framed = f"Content-Length: {len(body)}", body
    else:
        framing_header, framed = "Transfer-Encoding: chunked", chunked(body)
    head = (
        f"POST {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
        f"Content-Type: application/octet-stream\r\n{framing_header}\r\n\r\n"
    ).encode()
    return head, framed


def post(server: Server, target: str, body: bytes, framing: str, pieces: int = 1) -> list:
    """POST ``body``; with ``pieces`` > 1 the framed body goes out in that many TCP sends,
    0.15 s apart. Returns the app's result: the bytes each read call returned."""
    head, framed = request_parts(target, body, framing)
    with connect(server.addr, timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(head)
        step = max(1, -(-len(framed) // pieces))
        for i in range(0, len(framed), step):
            if pieces > 1:
                time.sleep(0.15)
            sock.sendall(framed[i : i + step])
        resp = Reader(sock).response()
    assert resp.status == 200, (resp.status, resp.body[:500])
    data = resp.json()
    assert data["types"] in ([], ["bytes"]), data["types"]
    return [piece.encode("latin-1") for piece in data["result"]]


def expected_lines(body: bytes) -> list[bytes]:
    return body.splitlines(keepends=True)


# --- read ---------------------------------------------------------------------------------


@pytest.mark.parametrize("framing", FRAMINGS)
def test_read_without_size_returns_the_whole_body(server, framing):
    assert post(server, "/read", LINES_BODY, framing) == [LINES_BODY]


@pytest.mark.parametrize("framing", FRAMINGS)
def test_read_returns_a_binary_body_byte_exact(server, framing):
    body = bytes(range(256)) * 64
    assert post(server, "/read", body, framing) == [body]


@pytest.mark.parametrize("framing", FRAMINGS)
def test_read_minus_one_returns_the_whole_body(server, framing):
    assert post(server, "/read-minus-one", LINES_BODY, framing) == [LINES_BODY]


@pytest.mark.parametrize("framing", FRAMINGS)
def test_read_n_returns_pieces_of_at_most_n_bytes_that_make_up_the_body(server, framing):
    body = bytes(range(256)) * 8
    pieces = post(server, "/read-n?n=100", body, framing)
    assert pieces[-1] == b""
    assert all(0 < len(piece) <= 100 for piece in pieces[:-1]), [len(p) for p in pieces]
    assert b"".join(pieces) == body


@pytest.mark.parametrize("framing", FRAMINGS)
def test_read_n_then_read_loses_nothing(server, framing):
    first, rest = post(server, "/read-n-then-read?n=5", LINES_BODY, framing)
    assert first == LINES_BODY[:5]
    assert rest == LINES_BODY[5:]


@pytest.mark.parametrize("framing", FRAMINGS)
def test_eof_is_sticky_every_read_after_eof_returns_empty(server, framing):
    first, *after = post(server, "/eof-sticky", LINES_BODY, framing)
    assert first == LINES_BODY
    assert after == [b"", b"", b"", b""]


# --- readline, readlines, iteration -------------------------------------------------------


@pytest.mark.parametrize("framing", FRAMINGS)
def test_readline_returns_one_line_at_a_time_keeping_the_newline(server, framing):
    lines = post(server, "/readline", LINES_BODY, framing)
    assert lines == [*expected_lines(LINES_BODY), b""]


@pytest.mark.parametrize("framing", FRAMINGS)
def test_readline_n_returns_at_most_n_bytes_and_stops_at_a_newline(server, framing):
    body = b"abcd\nef\n\nghijk"
    pieces = post(server, "/readline-n?n=2", body, framing)
    assert pieces == [b"ab", b"cd", b"\n", b"ef", b"\n", b"\n", b"gh", b"ij", b"k", b""]


@pytest.mark.parametrize("framing", FRAMINGS)
def test_readline_then_read_loses_nothing(server, framing):
    first, rest = post(server, "/readline-then-read", LINES_BODY, framing)
    assert first == b"first line\n"
    assert rest == LINES_BODY[len(first) :]


@pytest.mark.parametrize("framing", FRAMINGS)
def test_readlines_returns_every_line_keeping_newlines(server, framing):
    assert post(server, "/readlines", LINES_BODY, framing) == expected_lines(LINES_BODY)


@pytest.mark.parametrize("framing", FRAMINGS)
def test_iterating_the_input_yields_its_lines(server, framing):
    assert post(server, "/iterate", LINES_BODY, framing) == expected_lines(LINES_BODY)


# --- bodies arriving slowly, and the end of the body --------------------------------------


@pytest.mark.parametrize("framing", FRAMINGS)
def test_body_split_across_several_tcp_sends_is_read_whole(server, framing):
    body = bytes(range(256)) * 4
    assert post(server, "/read", body, framing, pieces=5) == [body]


@pytest.mark.parametrize("framing", FRAMINGS)
def test_readline_works_when_lines_span_several_tcp_sends(server, framing):
    lines = post(server, "/readline", LINES_BODY, framing, pieces=6)
    assert lines == [*expected_lines(LINES_BODY), b""]


def post_with_part_in_head_packet(server: Server, target: str, body: bytes, cut: int) -> list:
    """POST a Content-Length ``body`` whose first ``cut`` bytes go out in the same send as the
    head and the rest 0.15 s later: the server holds the body in two pieces (what came with
    the head, and the rest in a buffer of its own) before the app runs."""
    head, framed = request_parts(target, body, "length")
    with connect(server.addr, timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(head + framed[:cut])
        time.sleep(0.15)
        sock.sendall(framed[cut:])
        resp = Reader(sock).response()
    assert resp.status == 200, (resp.status, resp.body[:500])
    return [piece.encode("latin-1") for piece in resp.json()["result"]]


LONG_LINES_BODY = b"".join(b"line %05d %s\n" % (i, b"x" * (i % 97)) for i in range(600))


@pytest.mark.parametrize("cut", [1, 4000, 20011])
def test_a_body_arriving_partly_with_the_head_reads_the_same_every_way(server, cut):
    body = LONG_LINES_BODY
    assert 30000 < len(body) <= 65536 and cut < len(body)
    assert post_with_part_in_head_packet(server, "/read", body, cut) == [body]
    assert post_with_part_in_head_packet(server, "/readline", body, cut) == [
        *expected_lines(body),
        b"",
    ]
    pieces = post_with_part_in_head_packet(server, "/read-n?n=7777", body, cut)
    assert b"".join(pieces) == body
    assert [len(p) for p in pieces[:-2]] == [7777] * (len(pieces) - 2), [len(p) for p in pieces]
    assert pieces[-1] == b""
    assert post_with_part_in_head_packet(server, "/readlines", body, cut) == expected_lines(body)


@pytest.mark.parametrize("framing", FRAMINGS)
def test_read_larger_than_the_body_returns_promptly_without_waiting_for_more(server, framing):
    started = time.monotonic()
    result = post(server, "/read-big", b"0123456789", framing)
    elapsed = time.monotonic() - started
    assert result == [b"0123456789"]
    assert elapsed < 3, f"read(100000) on a 10-byte body took {elapsed:.1f}s"


def test_read_on_a_request_without_a_body_returns_empty_promptly(server):
    started = time.monotonic()
    with connect(server.addr, timeout=10) as sock:
        sock.sendall(b"GET /read-big HTTP/1.1\r\nHost: localhost\r\n\r\n")
        resp = Reader(sock).response()
    elapsed = time.monotonic() - started
    assert resp.status == 200
    assert resp.json()["result"] == [""]
    assert elapsed < 3, f"read(100000) with no body took {elapsed:.1f}s"
