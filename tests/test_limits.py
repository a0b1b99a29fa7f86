"""Request limits (issue #3): --limit-request-line, --limit-request-fields,
--limit-request-field-size (and its gunicorn spelling), --max-request-body, --max-connections,
--backlog, and bad values for the new options.

Each limit is checked at a small custom value and at its default: one byte/field over the limit
is refused (right status, ``Connection: close``, then the socket closes) and exactly the limit is
served. Apps log ``hard-called PATH`` on wsgi.errors, so "the app never ran" is checked by serving
a sentinel request afterwards and looking for the refused path in the error log.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import threading
import time

import pytest
from conftest import run_wizgy
from helpers import Reader, connect, request

APP = "hard_apps:app"
SENTINELS = itertools.count()
KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB


def build(target: str = "/", *fields: str, method: str = "GET", body: bytes = b"") -> bytes:
    """A request head with exactly ``fields`` as its header lines (add Host yourself)."""
    lines = [f"{method} {target} HTTP/1.1", *fields]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def connection_tokens(resp) -> set[str]:
    return {
        token.strip().lower()
        for value in resp.header_all("connection")
        for token in value.split(",")
        if token.strip()
    }


def assert_refused(addr, data: bytes, status: int):
    """Send ``data``; expect one complete ``status`` response with Connection: close, then EOF."""
    with connect(addr, 10) as sock:
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused before everything was sent; the response is still in our buffer
        reader = Reader(sock)
        resp = reader.response()
        assert resp.status == status, (resp.status, resp.reason, resp.body[:200])
        assert "close" in connection_tokens(resp), resp.headers
        assert resp.header("content-type") == "text/plain; charset=utf-8", resp.headers
        assert resp.header("content-length") == str(len(resp.body)), resp.headers
        assert reader.is_closed(5.0), f"connection still open after {status}"
    return resp


def assert_served(addr, data: bytes):
    """Send ``data`` (a request without Connection: close); expect a 200 from ``counted``."""
    with connect(addr, 30) as sock:
        sock.sendall(data)
        resp = Reader(sock).response()
    assert resp.status == 200, (resp.status, resp.reason, resp.body[:200])
    return resp


def assert_app_not_called(server, refused_path: str) -> None:
    """Serve a sentinel request, wait for its log line, then check ``refused_path`` never ran."""
    sentinel = f"/sentinel-{next(SENTINELS)}"  # short: it must pass the tightest limits
    assert request(server.addr, "GET", sentinel).status == 200
    server.wait_for(f"hard-called {sentinel}\\b", 5)
    ran = re.search(rf"hard-called {re.escape(refused_path)}\s*$", server.log(), re.M)
    assert ran is None, f"the app ran for a refused request:\n{server.log()}"


def line_of_length(length: int, prefix: str = "/l") -> str:
    """A target such that ``GET TARGET HTTP/1.1`` is exactly ``length`` bytes."""
    fixed = len("GET  HTTP/1.1") + len(prefix)
    assert length >= fixed
    return prefix + "a" * (length - fixed)


def field_of_length(length: int, name: str = "X-Long") -> str:
    """A header line ``NAME: vvv...`` exactly ``length`` bytes long (without CRLF)."""
    fixed = len(name) + 2
    return f"{name}: " + "v" * (length - fixed)


# --- --limit-request-line ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options, limit",
    [(("--limit-request-line", "100"), 100), ((), 8190)],
    ids=["custom-100", "default-8190"],
)
def test_request_line_at_the_limit_is_served_and_one_byte_over_is_414(serve, options, limit):
    server = serve(APP, "--threads", "2", *options)
    at = line_of_length(limit, "/at")
    resp = assert_served(server.addr, build(at, "Host: localhost"))
    assert resp.body.startswith(b"0 "), resp.body
    over = line_of_length(limit + 1, "/over")
    assert_refused(server.addr, build(over, "Host: localhost"), 414)
    assert_app_not_called(server, over)


def test_request_line_still_arriving_past_the_limit_is_414_without_waiting(serve):
    server = serve(APP, "--threads", "2", "--limit-request-line", "100")
    with connect(server.addr, 10) as sock:
        sock.sendall(b"GET /" + b"a" * 300)  # no CRLF yet: the line is still arriving
        started = time.monotonic()
        reader = Reader(sock)
        resp = reader.response()
        elapsed = time.monotonic() - started
        assert resp.status == 414, (resp.status, resp.body)
        assert "close" in connection_tokens(resp)
        assert reader.is_closed(5.0)
    assert elapsed < 2.0, f"414 for an over-long partial line took {elapsed:.2f} s"


# --- --limit-request-fields ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "options, limit",
    [(("--limit-request-fields", "5"), 5), ((), 100)],
    ids=["custom-5", "default-100"],
)
def test_header_field_count_at_the_limit_is_served_and_one_more_is_431(serve, options, limit):
    server = serve(APP, "--threads", "2", *options)
    at = ["Host: localhost", *(f"X-F{i}: {i}" for i in range(limit - 1))]
    assert len(at) == limit
    assert_served(server.addr, build("/fields-at", *at))
    over = [*at, "X-One-Too-Many: 1"]
    assert_refused(server.addr, build("/fields-over", *over), 431)
    assert_app_not_called(server, "/fields-over")


# --- --limit-request-field-size ------------------------------------------------------------------


@pytest.mark.parametrize(
    "options, limit",
    [
        (("--limit-request-field-size", "100"), 100),
        (("--limit-request-field_size", "100"), 100),
        ((), 8190),
    ],
    ids=["custom-100", "gunicorn-alias-100", "default-8190"],
)
def test_header_field_line_at_the_limit_is_served_and_one_byte_over_is_431(serve, options, limit):
    server = serve(APP, "--threads", "2", *options)
    at = field_of_length(limit)
    assert len(at) == limit
    resp = assert_served(server.addr, build("/size-at", "Host: localhost", at))
    assert resp.body.startswith(b"0 ")
    over = field_of_length(limit + 1)
    assert_refused(server.addr, build("/size-over", "Host: localhost", over), 431)
    assert_app_not_called(server, "/size-over")


def test_field_size_limit_also_applies_to_the_host_line(serve):
    server = serve(APP, "--threads", "2", "--limit-request-field-size", "64")
    host = "Host: " + "h" * 80
    assert_refused(server.addr, build("/big-host", host), 431)


# --- --max-request-body --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, limit",
    [("1000", 1000), ("64KiB", 64 * KIB), ("1MiB", MIB)],
    ids=["plain-1000", "64KiB", "1MiB"],
)
def test_content_length_over_max_request_body_is_413_before_the_app_runs(serve, value, limit):
    server = serve(APP, "--threads", "2", "--max-request-body", value)
    # Only the head is sent: the refusal must come from Content-Length alone.
    head = build("/cl-over", "Host: localhost", f"Content-Length: {limit + 1}")
    assert_refused(server.addr, head, 413)
    assert_app_not_called(server, "/cl-over")
    body = bytes(i % 251 for i in range(limit))
    resp = assert_served(
        server.addr, build("/cl-at", "Host: localhost", f"Content-Length: {limit}", body=body)
    )
    assert resp.body.decode() == f"{limit} {hashlib.sha256(body).hexdigest()}"


def test_expect_100_continue_over_the_limit_gets_413_and_no_100_continue(serve):
    server = serve(APP, "--threads", "2", "--max-request-body", "1000")
    head = build("/expect-over", "Host: localhost", "Content-Length: 1001", "Expect: 100-continue")
    with connect(server.addr, 10) as sock:
        sock.sendall(head)
        reader = Reader(sock)
        resp = reader.response()
        assert reader.is_closed(5.0)
    assert resp.status == 413, (resp.status, resp.reason)
    assert "close" in connection_tokens(resp)
    assert_app_not_called(server, "/expect-over")


def test_expect_100_continue_at_the_limit_gets_100_then_200(serve):
    server = serve(APP, "--threads", "2", "--max-request-body", "1000")
    head = build("/expect-at", "Host: localhost", "Content-Length: 1000", "Expect: 100-continue")
    with connect(server.addr, 10) as sock:
        sock.sendall(head)
        reader = Reader(sock)
        interim = reader.response()
        assert interim.status == 100, (interim.status, interim.reason)
        sock.sendall(b"b" * 1000)
        resp = reader.response()
    assert resp.status == 200
    assert resp.body.decode() == f"1000 {hashlib.sha256(b'b' * 1000).hexdigest()}"


def chunked(*sizes: int) -> bytes:
    return b"".join(b"%x\r\n" % n + b"c" * n + b"\r\n" for n in sizes) + b"0\r\n\r\n"


def test_chunked_body_growing_past_max_request_body_is_413_and_close(serve):
    server = serve(APP, "--threads", "2", "--max-request-body", "1000")
    data = build(
        "/chunked-over",
        "Host: localhost",
        "Transfer-Encoding: chunked",
        body=chunked(400, 400, 400),
    )
    assert_refused(server.addr, data, 413)
    # The app ran (chunked has no length up front) and its read raised at the limit.
    server.wait_for(r"hard-read-error /chunked-over ", 5)
    assert "hard-read-done /chunked-over" not in server.log()
    assert request(server.addr, "GET", "/still-serving").status == 200


def test_chunked_body_exactly_at_max_request_body_is_served(serve):
    server = serve(APP, "--threads", "2", "--max-request-body", "1000")
    data = build(
        "/chunked-at", "Host: localhost", "Transfer-Encoding: chunked", body=chunked(400, 400, 200)
    )
    resp = assert_served(server.addr, data)
    assert resp.body.decode() == f"1000 {hashlib.sha256(b'c' * 1000).hexdigest()}"


def test_default_max_request_body_refuses_one_byte_over_1gib_before_the_app(serve):
    server = serve(APP, "--threads", "2")
    head = build("/gib-over", "Host: localhost", f"Content-Length: {GIB + 1}")
    assert_refused(server.addr, head, 413)
    assert_app_not_called(server, "/gib-over")


def test_default_max_request_body_serves_exactly_1gib(serve):
    server = serve(APP, "--threads", "2")
    block = bytes(range(256)) * (4 * KIB)  # 1 MiB
    digest = hashlib.sha256()
    started = time.monotonic()
    with connect(server.addr, 30) as sock:
        sock.sendall(build("/gib-at", "Host: localhost", f"Content-Length: {GIB}"))
        for _ in range(GIB // len(block)):
            sock.sendall(block)
            digest.update(block)
        resp = Reader(sock).response()
    elapsed = time.monotonic() - started
    print(f"1 GiB body accepted and read in {elapsed:.2f} s")
    assert resp.status == 200, (resp.status, resp.body[:200])
    assert resp.body.decode() == f"{GIB} {digest.hexdigest()}"


# --- --max-connections ---------------------------------------------------------------------------


def test_max_connections_queues_the_third_connection_until_one_closes(serve):
    server = serve(APP, "--threads", "4", "--max-connections", "2", "--keep-alive", "30s")
    held = []
    for i in range(2):
        sock = connect(server.addr, 10)
        sock.sendall(build(f"/held{i}", "Host: localhost"))
        assert Reader(sock).response().status == 200
        held.append(sock)

    result: dict = {}

    def third() -> None:
        try:
            with connect(server.addr, 10) as sock:  # the kernel's backlog completes this
                result["connected"] = time.monotonic()
                sock.sendall(build("/third", "Host: localhost", "Connection: close"))
                result["response"] = Reader(sock).response()
                result["answered"] = time.monotonic()
        except Exception as exc:  # reported by the assertions below
            result["error"] = exc

    thread = threading.Thread(target=third, daemon=True)
    try:
        thread.start()
        time.sleep(0.5)
        assert "error" not in result, f"third connection failed: {result['error']!r}"
        assert "connected" in result, "third connect() did not complete (refused or stuck?)"
        assert "response" not in result, "third connection was served while 2 were open"
        closed_at = time.monotonic()
        held.pop().close()
        thread.join(5)
    finally:
        for sock in held:
            sock.close()
    assert "error" not in result, f"third connection failed: {result.get('error')!r}"
    assert "response" in result, "third connection not served within 5 s after one closed"
    assert result["response"].status == 200
    waited = result["answered"] - closed_at
    print(f"third connection answered {waited:.3f} s after one of the first two closed")
    assert waited < 3.0


# --- --backlog -----------------------------------------------------------------------------------


def test_backlog_option_is_accepted_and_the_server_serves(serve):
    server = serve(APP, "--threads", "2", "--backlog", "16")
    socks = [connect(server.addr, 10) for _ in range(8)]
    try:
        for i, sock in enumerate(socks):
            sock.sendall(build(f"/b{i}", "Host: localhost", "Connection: close"))
        for sock in socks:
            assert Reader(sock).response().status == 200
    finally:
        for sock in socks:
            sock.close()


# --- bad values ----------------------------------------------------------------------------------

BAD_VALUES = {
    "max-request-body-word": ["--max-request-body", "lots"],
    "max-request-body-unit": ["--max-request-body", "12parsecs"],
    "header-timeout-negative": ["--header-timeout", "-1"],
    "keep-alive-word": ["--keep-alive", "soon"],
    "body-timeout-unit": ["--body-timeout", "3fortnights"],
    "write-timeout-word": ["--write-timeout", "never"],
    "limit-request-line-word": ["--limit-request-line", "long"],
    "limit-request-fields-word": ["--limit-request-fields", "many"],
    "limit-request-field-size-word": ["--limit-request-field-size", "big"],
    "max-connections-word": ["--max-connections", "lots"],
    "backlog-word": ["--backlog", "deep"],
}


@pytest.mark.parametrize("args", list(BAD_VALUES.values()), ids=list(BAD_VALUES))
def test_a_bad_value_for_a_new_option_exits_2_with_one_line_naming_it(args):
    result = run_wizgy(*args, "echo:app", timeout=10)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("wizgy: error:"), lines[0]
    assert args[0] in lines[0], f"{args[0]} not named in: {lines[0]}"
    assert "Traceback" not in result.stderr + result.stdout


def test_refused_requests_leave_the_server_serving_and_pipelined_bytes_unprocessed(serve):
    server = serve(APP, "--threads", "2", "--limit-request-line", "100")
    over = line_of_length(101, "/pipe-over")
    data = build(over, "Host: localhost") + build("/pipelined-after", "Host: localhost")
    with connect(server.addr, 10) as sock:
        sock.sendall(data)
        reader = Reader(sock)
        resp = reader.response()
        assert resp.status == 414
        assert reader.is_closed(5.0), "bytes after a refused request were answered"
    assert_app_not_called(server, "/pipelined-after")
    assert server.proc.poll() is None
