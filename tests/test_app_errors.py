"""What the client and the error log see when the app fails, and wsgi.errors, against
tests/apps/pep_errors.py."""

from __future__ import annotations

import socket
import uuid

import pytest
from conftest import Server, running
from helpers import Reader, Response, connect

APP = "pep_errors:app"


@pytest.fixture(scope="module")
def server():
    with running(APP, "--threads", "4") as srv:
        yield srv


def build(target: str, close: bool = True) -> bytes:
    extra = "Connection: close\r\n" if close else ""
    return f"GET {target} HTTP/1.1\r\nHost: localhost\r\n{extra}\r\n".encode()


def get(server: Server, target: str) -> Response:
    with connect(server.addr, timeout=10) as sock:
        sock.sendall(build(target))
        return Reader(sock).response()


def token() -> str:
    return uuid.uuid4().hex


# --- an exception before the headers are sent ---------------------------------------------


@pytest.mark.parametrize(
    "route", ["/raise-before", "/raise-after-start-response", "/raise-in-first-next"]
)
def test_exception_before_headers_are_sent_gives_500_internal_server_error(server, route):
    resp = get(server, route)
    assert (resp.status, resp.reason) == (500, "Internal Server Error")


def test_exception_before_headers_response_has_a_content_length(server):
    resp = get(server, "/raise-before")
    assert resp.header("Content-Length") is not None
    assert int(resp.header("Content-Length")) == len(resp.body)
    assert resp.header("Transfer-Encoding") is None


def test_exception_before_headers_response_says_connection_close_and_closes(server):
    with connect(server.addr, timeout=10) as sock:
        sock.sendall(build("/raise-before", close=False))  # a keep-alive request
        reader = Reader(sock)
        resp = reader.response()
        assert resp.status == 500
        assert resp.header("Connection") == "close"
        assert reader.is_closed(5), "connection still open after the 500"


def test_exception_before_headers_logs_the_traceback(server):
    tok = token()
    get(server, f"/raise-before?token={tok}")
    match = server.wait_for(
        r"Traceback \(most recent call last\):[\s\S]*?RuntimeError: pep-error-before-headers "
        + tok,
        timeout=5,
    )
    assert match


def test_server_keeps_serving_new_connections_after_an_app_exception(server):
    assert get(server, "/raise-before").status == 500
    resp = get(server, "/ok")
    assert resp.status == 200
    assert resp.body == b"ok"


# --- an exception after the headers are sent ----------------------------------------------


def test_exception_after_headers_cuts_a_chunked_response_without_terminator(server):
    with connect(server.addr, timeout=10) as sock:
        sock.sendall(build("/raise-after-headers"))
        reader = Reader(sock)
        head = reader.read_until(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 ")
        assert b"transfer-encoding: chunked" in head.lower()
        try:
            rest = reader.read_to_close()
        except ConnectionResetError:
            rest = reader.buf
        except socket.timeout:
            pytest.fail("connection left open after the app raised mid-body")
    assert b"part-one;" in rest
    assert b"0\r\n\r\n" not in rest, rest


def test_exception_after_headers_leaves_a_content_length_response_short(server):
    with connect(server.addr, timeout=10) as sock:
        sock.sendall(build("/raise-after-headers-with-length"))
        reader = Reader(sock)
        head = reader.read_until(b"\r\n\r\n")
        assert b"content-length: 100\r\n" in head.lower()
        try:
            rest = reader.read_to_close()
        except ConnectionResetError:
            rest = reader.buf
        except socket.timeout:
            pytest.fail("connection left open after the app raised mid-body")
    assert rest == b"part-one;"


def test_exception_after_headers_is_logged(server):
    tok = token()
    with connect(server.addr, timeout=10) as sock:
        sock.sendall(build(f"/raise-after-headers?token={tok}"))
        try:
            Reader(sock).read_to_close()
        except ConnectionResetError:
            pass
    server.wait_for(r"RuntimeError: pep-error-after-headers " + tok, timeout=5)


# --- wsgi.errors --------------------------------------------------------------------------


def test_wsgi_errors_write_appears_in_the_error_log(server):
    tok = token()
    assert get(server, f"/errors-write?token={tok}").status == 200
    server.wait_for(rf"pep-errors-write {tok}\n", timeout=5)


def test_wsgi_errors_writelines_appears_in_the_error_log(server):
    tok = token()
    assert get(server, f"/errors-writelines?token={tok}").status == 200
    server.wait_for(rf"pep-errors-line-one {tok}\n(.*\n)*?.*pep-errors-line-two {tok}\n", timeout=5)


def test_print_to_wsgi_errors_appears_in_the_error_log(server):
    tok = token()
    assert get(server, f"/errors-print?token={tok}").status == 200
    server.wait_for(rf"pep-errors-print {tok}\n", timeout=5)
