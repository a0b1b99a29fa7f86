"""One test per defect found in review, named after what broke (each failed before its fix)."""

from __future__ import annotations

import socket
import struct
import time

import pytest
from helpers import Reader, connect, request

SIZE = 256 * 200


@pytest.fixture
def server(serve):
    return serve("regress_apps:app", "--threads", "2")


def test_file_wrapper_after_write_keeps_chunked_framing_and_the_next_response_clean(server):
    with connect(server.addr) as sock:
        reader = Reader(sock)
        sock.sendall(b"GET /write-then-file HTTP/1.1\r\nHost: x\r\n\r\n")
        first = reader.response()
        assert first.chunked
        assert first.body == b"HEAD-" + bytes(range(256)) * 200
        sock.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        second = reader.response()
        assert (second.status, second.body) == (200, b"hello")


def test_no_100_continue_is_written_inside_a_started_response(server):
    with connect(server.addr) as sock:
        sock.sendall(
            b"POST /write-then-read HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
            b"Expect: 100-continue\r\nConnection: close\r\n\r\n"
        )
        time.sleep(0.3)
        sock.sendall(b"abcde")
        resp = Reader(sock).response()
    assert b"100 Continue" not in resp.body
    assert resp.body == b"hello got 5"


def test_a_body_cut_off_by_the_client_makes_the_read_raise_not_return_short(server):
    with connect(server.addr) as sock:
        sock.sendall(
            b"POST /read-reports HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n3\r\nab"
        )
        time.sleep(0.2)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    server.wait_for(r"REGRESS-READ read raised ClientDisconnected")
    assert "REGRESS-READ read returned" not in server.log()


def test_a_malformed_chunked_body_is_refused_even_when_the_app_answers_itself(server):
    with connect(server.addr) as sock:
        sock.sendall(
            b"POST /read-reports HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhelloXX0\r\n\r\n"
        )
        resp = Reader(sock).response()
    assert resp.status == 400
    assert resp.header("Connection") == "close"


def test_write_from_another_thread_does_not_kill_the_app_thread(serve):
    server = serve("regress_apps:app", "--threads", "1", "--write-timeout", "1s")
    with connect(server.addr) as sock:
        sock.sendall(b"GET /background-writer HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(1.5)  # never read: the writer thread blocks, then times out
    for _ in range(3):
        resp = request(server.addr, "GET", "/hello")
        assert (resp.status, resp.body) == (200, b"hello")
    assert "panicked" not in server.log()


def test_an_interim_status_from_the_app_is_an_error_not_a_final_response(server):
    resp = request(server.addr, "GET", "/interim-status")
    assert resp.status == 500


def test_head_does_not_advertise_a_length_computed_from_an_empty_body(server):
    resp = request(server.addr, "HEAD", "/head-without-length")
    assert resp.status == 200
    assert resp.header("Content-Length") is None
    get = request(server.addr, "GET", "/head-without-length")
    assert get.body == b"0123456789" * 2
