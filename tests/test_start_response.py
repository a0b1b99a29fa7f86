"""PEP 3333 start_response() clauses, against tests/apps/pep_start_response.py over sockets."""

from __future__ import annotations

import socket
import uuid
from urllib.parse import quote

import pytest
from conftest import Server, running
from helpers import Reader, Response, connect

APP = "pep_start_response:app"


@pytest.fixture(scope="module")
def server():
    with running(APP, "--threads", "4") as srv:
        yield srv


def build(target: str, method: str = "GET", version: str = "HTTP/1.1") -> bytes:
    return f"{method} {target} {version}\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode()


def get(server: Server, target: str) -> Response:
    with connect(server.addr, timeout=10) as sock:
        sock.sendall(build(target))
        return Reader(sock).response()


def wire(server: Server, target: str) -> bytes:
    """Every byte the server sends for one request; fails if it does not close within 10 s."""
    with connect(server.addr, timeout=10) as sock:
        sock.sendall(build(target))
        try:
            return Reader(sock).read_to_close()
        except ConnectionResetError:
            pytest.fail("connection reset instead of a response")


def status_line(data: bytes) -> bytes:
    return data.split(b"\r\n", 1)[0]


# --- write() ------------------------------------------------------------------------------


def test_start_response_returns_a_write_callable(server):
    resp = get(server, "/returns-write")
    assert resp.status == 200
    assert resp.body == b"callable"


def test_write_output_then_the_iterable_are_both_delivered_in_order(server):
    resp = get(server, "/write-then-iterable")
    assert resp.status == 200
    assert resp.body == b"one;two;three;four"


def test_write_sends_its_data_before_the_app_returns(server, tmp_path):
    flag = tmp_path / "flag"
    with connect(server.addr, timeout=10) as sock:
        sock.sendall(build("/write-is-immediate?flag=" + quote(str(flag))))
        reader = Reader(sock)
        reader.sock.settimeout(5)
        try:
            head = reader.read_until(b"\r\n\r\n")
            reader.read_until(b"written-early;")
        except socket.timeout:
            pytest.fail("write() data not received while the app was still running")
        flag.touch()
        reader.sock.settimeout(10)
        rest = reader.read_to_close()
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"returned-late" in rest


# --- calling start_response more than once ------------------------------------------------


def test_start_response_twice_without_exc_info_raises(server):
    resp = get(server, "/twice")
    assert resp.status == 200
    assert resp.body == b"AssertionError"


def test_exc_info_before_headers_are_sent_replaces_status_and_headers(server):
    resp = get(server, "/exc-info-before-headers")
    assert (resp.status, resp.reason) == (500, "Oops")
    assert resp.header("X-First") is None
    assert resp.header("X-Second") == "2"
    assert resp.body == b"replaced"


def test_exc_info_after_headers_are_sent_reraises_the_original_exception(server):
    token = uuid.uuid4().hex
    with connect(server.addr, timeout=10) as sock:
        sock.sendall(build(f"/exc-info-after-headers?token={token}"))
        try:
            Reader(sock).read_to_close()
        except ConnectionResetError:
            pass
    match = server.wait_for(rf"pep-reraised {token} (.*)", timeout=5)
    assert match.group(1).strip() == "same=True type=ValueError"


def test_exc_info_after_headers_are_sent_cuts_the_connection(server):
    with connect(server.addr, timeout=10) as sock:
        sock.sendall(build("/exc-info-after-headers"))
        reader = Reader(sock)
        head = reader.read_until(b"\r\n\r\n")
        try:
            rest = reader.read_to_close()
        except ConnectionResetError:
            rest = reader.buf
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"transfer-encoding: chunked" in head.lower()
    assert b"partial;" in rest
    assert not rest.endswith(b"0\r\n\r\n"), rest


def test_start_response_may_be_called_on_the_first_iteration(server):
    resp = get(server, "/lazy")
    assert resp.status == 200
    assert resp.header("X-Lazy") == "yes"
    assert resp.body == b"lazy-body"


# --- the status argument ------------------------------------------------------------------


@pytest.mark.parametrize(
    "case", ["no-reason", "four-digits", "two-digits", "letters", "no-space", "bytes"]
)
def test_status_that_is_not_three_digits_space_reason_gives_500(server, case):
    resp = get(server, f"/status?case={case}")
    assert resp.status == 500
    assert resp.body != b"status-body"


@pytest.mark.parametrize("status", ["299 Custom Thing", "404 Gone Fishing"])
def test_reason_phrase_is_sent_verbatim(server, status):
    data = wire(server, "/status?s=" + quote(status))
    assert status_line(data) == b"HTTP/1.1 " + status.encode()


# --- the headers argument -----------------------------------------------------------------


@pytest.mark.parametrize(
    "case",
    [
        "crlf-in-value",
        "lf-in-value",
        "cr-in-value",
        "nul-in-value",
        "crlf-in-name",
        "nul-in-name",
    ],
)
def test_header_with_cr_lf_or_nul_gives_500_and_never_reaches_the_wire(server, case):
    data = wire(server, f"/bad-header?case={case}")
    assert status_line(data).startswith(b"HTTP/1.1 500 ")
    assert b"\nx-injected" not in data.lower()
    assert b"\rx-injected" not in data.lower()
    assert b"\x00" not in data
    assert b"should-not-be-sent" not in data


@pytest.mark.parametrize("case", ["space-in-name", "colon-in-name", "at-in-name", "empty-name"])
def test_header_name_that_is_not_a_token_gives_500(server, case):
    data = wire(server, f"/bad-header?case={case}")
    assert status_line(data).startswith(b"HTTP/1.1 500 ")
    assert b"should-not-be-sent" not in data


@pytest.mark.parametrize("case", ["bytes-name", "bytes-value"])
def test_bytes_instead_of_str_in_a_header_gives_500(server, case):
    data = wire(server, f"/bad-header?case={case}")
    assert status_line(data).startswith(b"HTTP/1.1 500 ")
    assert b"should-not-be-sent" not in data


def test_header_value_not_encodable_as_latin1_gives_500(server):
    data = wire(server, "/bad-header?case=non-latin1-value")
    assert status_line(data).startswith(b"HTTP/1.1 500 ")
    assert b"should-not-be-sent" not in data


@pytest.mark.parametrize(
    "case",
    [
        "hop-connection",
        "hop-keep-alive",
        "hop-transfer-encoding",
        "hop-transfer-encoding-lowercase",
        "hop-te",
        "hop-trailer",
        "hop-upgrade",
        "hop-proxy-authenticate",
        "hop-proxy-authorization",
    ],
)
def test_hop_by_hop_header_from_the_app_gives_500(server, case):
    data = wire(server, f"/bad-header?case={case}")
    assert status_line(data).startswith(b"HTTP/1.1 500 ")
    assert b"should-not-be-sent" not in data


@pytest.mark.parametrize("case", ["crlf-in-value", "nul-in-value", "space-in-name", "hop-upgrade"])
def test_start_response_itself_raises_for_a_bad_header(server, case):
    resp = get(server, f"/bad-header-caught?case={case}")
    assert (resp.status, resp.reason) == (299, "Caught")
    assert resp.body.startswith(b"raised:")


def test_token_header_names_and_latin1_values_are_sent_verbatim(server):
    data = wire(server, "/good-headers")
    head = data.split(b"\r\n\r\n", 1)[0]
    assert status_line(data) == b"HTTP/1.1 200 OK"
    lines = (head + b"\r\n").lower()  # names are case-insensitive; values are compared exactly
    assert b"\r\nx-token-name!#$%&'*+-.^_`|~: v\r\n" in lines
    assert b"\r\nx-latin: caf\xe9\r\n" in lines
    assert b"\r\nx-spaces: a  b\tc\r\n" in lines
