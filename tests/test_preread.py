"""Small request bodies read before the app is called, against tests/apps/preread_app.py.

A Content-Length body of at most 64 KiB without ``Expect: 100-continue`` is read completely by
the server before the app runs. If the client stalls (no byte for --body-timeout) or goes away
first, the app is still called: it reads the bytes that arrived, then the read raises, and the
connection is closed after the response. Larger bodies and ``100-continue`` requests still stream.

The app reports ``time.monotonic()`` readings; on Linux that is the system-wide
CLOCK_MONOTONIC, the same clock as this process, so "the app was called after the client sent
its last byte" is checked by causality rather than by guessed delays. Timing windows on timeouts
are generous (a 1 s timeout must fire after >= 0.7 s and within ~3.5 s).
"""

from __future__ import annotations

import hashlib
import socket
import struct
import time

import pytest
from helpers import Reader, connect, read_until_closed, request

APP = "preread_app:app"
PREREAD = 64 * 1024
BODY_TIMEOUT = ("--body-timeout", "1s", "--header-timeout", "20s", "--keep-alive", "20s")


def body_of(size: int) -> bytes:
    return bytes(range(256)) * (size // 256) + bytes(range(size % 256))


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def head(path: str, length: int, *extra: str) -> bytes:
    """A keep-alive POST head (no ``Connection: close``: closing must be the server's doing)."""
    lines = [f"POST {path} HTTP/1.1", "Host: localhost", f"Content-Length: {length}", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def nodelay(sock: socket.socket) -> socket.socket:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def assert_still_serving(server) -> None:
    resp = request(server.addr, "GET", "/hello", timeout=5)
    assert (resp.status, resp.body) == (200, b"hello")
    assert server.proc.poll() is None


# --- bodies up to 64 KiB arrive whole --------------------------------------------------------


def test_a_64_kib_body_sent_in_pieces_is_received_intact(serve):
    server = serve(APP, "--threads", "2")
    body = body_of(PREREAD)
    assert len(body) == 65536
    step = len(body) // 4
    with nodelay(connect(server.addr, 10)) as sock:
        sock.sendall(head("/read", len(body)))
        for i in range(0, len(body), step):
            time.sleep(0.05)
            last_sent = time.monotonic()
            sock.sendall(body[i : i + step])
        reader = Reader(sock)
        resp = reader.response()
        # The body was read in full, so the connection stays usable.
        sock.sendall(b"GET /hello HTTP/1.1\r\nHost: localhost\r\n\r\n")
        again = reader.response()
    assert resp.status == 200, resp.body[:300]
    data = resp.json()
    assert (data["size"], data["sha256"]) == (len(body), sha(body))
    assert data["called_at"] >= last_sent, "the app ran before the last piece was sent"
    assert (again.status, again.body) == (200, b"hello")


@pytest.mark.parametrize("size", [9_000, 20_011, PREREAD])
def test_requests_pipelined_right_after_a_small_body_are_answered_in_order(serve, size):
    """The body and the requests after it arrive in one burst: the server's read of the body
    may take bytes of the next requests too, and they must be parsed next, in order."""
    server = serve(APP, "--threads", "2")
    bodies = [body_of(size), body_of(size // 3 + 1)[::-1]]
    burst = (
        head("/read", len(bodies[0]))
        + bodies[0]
        + head("/read", len(bodies[1]))
        + bodies[1]
        + b"GET /hello HTTP/1.1\r\nHost: localhost\r\n\r\n"
    )
    with connect(server.addr, 10) as sock:
        sock.sendall(burst)
        reader = Reader(sock)
        first, second, third = (reader.response() for _ in range(3))
        assert reader.buf == b""
    for resp, body in zip((first, second), bodies):
        assert resp.status == 200, resp.body[:300]
        data = resp.json()
        assert (data["size"], data["sha256"]) == (len(body), sha(body))
    assert (third.status, third.body) == (200, b"hello")


def test_the_app_is_not_called_before_a_small_body_is_complete(serve):
    server = serve(APP, "--threads", "2")
    body = body_of(1000)
    with nodelay(connect(server.addr, 10)) as sock:
        sock.sendall(head("/read", len(body), "Connection: close") + body[:-1])
        time.sleep(0.3)
        called_early = "preread-called /read" in server.log()
        last_sent = time.monotonic()
        sock.sendall(body[-1:])
        resp = Reader(sock).response()
    assert not called_early, "the app was called while the last body byte was outstanding"
    assert resp.status == 200, resp.body[:300]
    data = resp.json()
    print(
        f"app called {data['called_at'] - last_sent:+.4f} s after the last byte was sent; "
        f"its read() took {data['read_seconds'] * 1000:.2f} ms"
    )
    assert (data["size"], data["sha256"]) == (len(body), sha(body))
    # Causality, not a guessed delay: the app's clock reading is after the client's.
    assert data["called_at"] >= last_sent, (data["called_at"], last_sent)


# --- larger bodies and 100-continue still stream ---------------------------------------------


@pytest.mark.parametrize("size", [PREREAD + 1, 200 * 1024])
def test_a_body_over_64_kib_streams_to_an_app_that_reads_it_in_pieces(serve, size):
    server = serve(APP, "--threads", "2")
    body = body_of(size)
    first = PREREAD  # everything but the tail: a pre-reading server would not call the app yet
    with nodelay(connect(server.addr, 10)) as sock:
        sock.sendall(head("/pieces?n=16384", size, "Connection: close") + body[:first])
        # Streaming: the app runs (and starts reading) before the body is complete.
        server.wait_for(r"preread-called /pieces", 5)
        sock.sendall(body[first:])
        resp = Reader(sock).response()
    assert resp.status == 200, resp.body[:300]
    data = resp.json()
    assert (data["size"], data["sha256"]) == (size, sha(body))
    assert all(0 < n <= 16384 for n in data["sizes"]), data["sizes"]


def test_100_continue_is_sent_only_when_the_app_reads_and_the_app_gets_the_body(serve):
    server = serve(APP, "--threads", "2")
    body = body_of(1000)
    with nodelay(connect(server.addr, 10)) as sock:
        sock.sendall(head("/expect?delay=0.3", len(body), "Expect: 100-continue"))
        reader = Reader(sock)
        # The client waits for the go-ahead before sending any body byte (bounded by the
        # socket timeout): a server that waited for the body here would deadlock.
        interim = reader.read_until(b"\r\n\r\n")
        continue_at = time.monotonic()
        sock.sendall(body)
        resp = reader.response()
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n", interim
    assert resp.status == 200, resp.body[:300]
    data = resp.json()
    print(
        f"100 Continue {continue_at - data['called_at']:.3f} s after the app was called, "
        f"{continue_at - data['read_started']:+.4f} s after its first read"
    )
    assert data["called_at"] < continue_at
    assert data["read_started"] <= continue_at, "100 Continue was sent before the app read"
    assert (data["size"], data["sha256"]) == (len(body), sha(body))


# --- a small body that never completes -------------------------------------------------------


def parse(data: bytes):
    """The one response in ``data`` (the bytes up to the server's close)."""

    class Buffered(Reader):
        def _fill(self) -> bool:
            return False

    reader = Buffered(None)
    reader.buf = data
    resp = reader.response()
    assert reader.buf == b"", f"bytes after the response: {reader.buf[:200]!r}"
    return resp


def stalled(server, path: str, end: str) -> tuple[bytes, bool, float, float]:
    """POST ``Content-Length: 1000`` with 10 bytes of body, then stall (``end="stall"``) or
    shut down the write side (``end="shut"``). Returns (bytes until close, closed, time of the
    last byte sent, seconds until the close)."""
    with nodelay(connect(server.addr, 10)) as sock:
        sock.sendall(head(path, 1000) + b"0123456789")
        sent = time.monotonic()
        if end == "shut":
            sock.shutdown(socket.SHUT_WR)
        data, closed = read_until_closed(sock, 8.0)
        return data, closed, sent, time.monotonic() - sent


def test_a_stalled_small_body_calls_the_app_after_the_body_timeout_with_what_arrived(serve):
    server = serve(APP, "--threads", "2", *BODY_TIMEOUT)
    data, closed, sent, elapsed = stalled(server, "/partial?n=5", "stall")
    print(f"stalled body: closed after {elapsed:.2f} s; got {data[:400]!r}")
    assert closed, f"connection still open 8 s after a stalled body; got {data[:300]!r}"
    assert 0.7 <= elapsed <= 3.5, f"closed {elapsed:.2f} s after the last byte"
    resp = parse(data)
    # The app caught the read error and answered: its response is sent, announcing the close.
    assert resp.status == 200, data[:300]
    assert resp.header("Connection") == "close"
    result = resp.json()
    waited = result["called_at"] - sent
    print(f"app called {waited:.2f} s after the last byte")
    assert 0.7 <= waited <= 3.5, f"app called {waited:.2f} s after the last byte"
    assert result["content_length"] == "1000"
    assert result["got"] == "0123456789"
    assert result["error"] is not None and result["error"].startswith("ClientDisconnected"), result
    assert_still_serving(server)


def test_a_read_larger_than_what_arrived_of_a_stalled_body_raises(serve):
    """read(n) with fewer than n bytes left before the failure raises rather than returning a
    short piece that would look like the end of the body."""
    server = serve(APP, "--threads", "2", *BODY_TIMEOUT)
    data, closed, _, elapsed = stalled(server, "/partial?n=1000", "stall")
    assert closed and 0.7 <= elapsed <= 3.5, (closed, elapsed, data[:300])
    result = parse(data).json()
    assert len(result["got"]) < 1000
    assert result["error"] is not None and result["error"].startswith("ClientDisconnected"), result
    assert_still_serving(server)


def test_a_read_error_from_a_stalled_body_left_unhandled_is_a_500_and_a_close(serve):
    server = serve(APP, "--threads", "2", *BODY_TIMEOUT)
    data, closed, _, elapsed = stalled(server, "/partial-raise", "stall")
    print(f"unhandled read error: closed after {elapsed:.2f} s; got {data[:300]!r}")
    assert closed, f"connection still open 8 s after a stalled body; got {data[:300]!r}"
    assert 0.7 <= elapsed <= 3.5, f"closed {elapsed:.2f} s after the last byte"
    resp = parse(data)
    assert resp.status == 500
    assert resp.header("Connection") == "close"
    server.wait_for(r"preread-raised /partial-raise ClientDisconnected", 5)
    assert_still_serving(server)


# --- a small body cut off by the client ------------------------------------------------------


def test_a_client_that_shuts_down_its_write_side_mid_body_is_answered_at_once(serve):
    """EOF is seen at once: no waiting for the (here 20 s) body timeout."""
    server = serve(APP, "--threads", "2", "--body-timeout", "20s", "--keep-alive", "20s")
    data, closed, _, elapsed = stalled(server, "/partial?n=5", "shut")
    print(f"SHUT_WR mid-body: closed after {elapsed:.2f} s; got {data[:400]!r}")
    assert closed, f"connection still open 8 s after SHUT_WR; got {data[:300]!r}"
    assert elapsed < 3.0, f"answered {elapsed:.2f} s after SHUT_WR"
    resp = parse(data)
    assert resp.status == 200, data[:300]
    result = resp.json()
    assert result["got"] == "0123456789"
    assert result["error"] is not None and result["error"].startswith("ClientDisconnected"), result
    assert_still_serving(server)


def test_shut_down_write_side_with_an_unhandled_read_error_is_a_500_and_a_close(serve):
    server = serve(APP, "--threads", "2", "--body-timeout", "20s", "--keep-alive", "20s")
    data, closed, _, elapsed = stalled(server, "/partial-raise", "shut")
    assert closed, f"connection still open 8 s after SHUT_WR; got {data[:300]!r}"
    assert elapsed < 3.0, f"answered {elapsed:.2f} s after SHUT_WR"
    resp = parse(data)
    assert resp.status == 500
    assert resp.header("Connection") == "close"
    assert_still_serving(server)


def test_a_client_that_resets_mid_body_does_not_hurt_the_server(serve):
    server = serve(APP, "--threads", "2", "--body-timeout", "20s", "--keep-alive", "20s")
    sock = nodelay(connect(server.addr, 10))
    try:
        sock.sendall(head("/partial?n=5", 1000) + b"0123456789")
        time.sleep(0.1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    finally:
        sock.close()
    # Called at once (not after the 20 s body timeout), and the read raised.
    match = server.wait_for(r"preread-partial /partial got=(\d+) error=(\w+)", 5)
    assert int(match.group(1)) <= 10
    assert match.group(2) == "ClientDisconnected"
    assert_still_serving(server)
