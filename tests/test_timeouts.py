"""Timeouts (issue #3): --header-timeout, --keep-alive, --body-timeout, --write-timeout, and a
slowloris attack against the default settings.

Timing windows are generous (a 1 s timeout must fire after >= 0.7 s and well within ~3.5 s) so
a loaded machine does not make them flaky, while a missing timeout (the 30 s default, or none)
still fails.
"""

from __future__ import annotations

import os
import resource
import select
import selectors
import socket
import threading
import time

import pytest
from helpers import Reader, connect, request

APP = "hard_apps:app"


def connection_tokens(resp) -> set[str]:
    return {
        token.strip().lower()
        for value in resp.header_all("connection")
        for token in value.split(",")
        if token.strip()
    }


def read_until_closed(sock: socket.socket, timeout: float) -> tuple[bytes, bool, float]:
    """Read everything until EOF/reset or ``timeout``: (bytes, closed, seconds waited)."""
    started = time.monotonic()
    deadline = started + timeout
    out = b""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return out, False, time.monotonic() - started
        sock.settimeout(remaining)
        try:
            piece = sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            return out, True, time.monotonic() - started
        except socket.timeout:
            return out, False, time.monotonic() - started
        if not piece:
            return out, True, time.monotonic() - started
        out += piece


def raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def server_fds(server) -> int:
    """Open fds of every wizgy process (the supervisor and its forked workers)."""
    pids = [server.proc.pid]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    ppid = int(stat.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            if ppid == server.proc.pid:
                pids.append(int(entry))
    total = 0
    for pid in pids:
        try:
            total += len(os.listdir(f"/proc/{pid}/fd"))
        except OSError:
            pass
    return total


# --- --header-timeout ----------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["1s", "1000ms", "1"])
def test_half_a_request_head_gets_408_and_close_after_the_header_timeout(serve, value):
    server = serve(APP, "--threads", "2", "--header-timeout", value, "--keep-alive", "20s")
    with connect(server.addr, 10) as sock:
        sock.sendall(b"GET /half HTTP/1.1\r\nHost: loc")
        started = time.monotonic()
        data, closed, _ = read_until_closed(sock, 8.0)
        elapsed = time.monotonic() - started
    print(f"--header-timeout {value}: 408 after {elapsed:.2f} s")
    assert closed, f"not closed within 8 s; got {data[:200]!r}"
    assert data.startswith(b"HTTP/1.1 408 "), data[:200]
    head = data.split(b"\r\n\r\n", 1)[0].lower()
    assert b"\r\nconnection: close" in head, data[:300]
    assert 0.7 <= elapsed <= 3.5, f"408 after {elapsed:.2f} s with --header-timeout {value}"
    assert "hard-called /half" not in server.log()


def test_a_head_trickling_in_byte_by_byte_still_times_out(serve):
    """The header timeout counts from the first byte; progress does not reset it."""
    server = serve(APP, "--threads", "2", "--header-timeout", "1s", "--keep-alive", "20s")
    payload = b"GET /trickle HTTP/1.1\r\nHost: localhost\r\nX-Slow: " + b"z" * 200
    with connect(server.addr, 10) as sock:
        started = time.monotonic()
        answered = None
        for byte in payload:  # at most 241 * 0.1 s; stops as soon as the server answers
            try:
                sock.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                break
            if select.select([sock], [], [], 0.1)[0]:
                answered = time.monotonic() - started
                break
        assert answered is not None, "the server never answered a head trickling in for 24 s"
        elapsed = answered
        reader = Reader(sock)
        resp = reader.response()
        assert reader.is_closed(5.0)
    print(f"trickled head answered after {elapsed:.2f} s")
    assert resp.status == 408
    assert "close" in connection_tokens(resp)
    assert 0.7 <= elapsed <= 3.5, f"trickled head answered after {elapsed:.2f} s"


def test_header_timeout_also_applies_to_the_second_request_on_a_connection(serve):
    server = serve(APP, "--threads", "2", "--header-timeout", "1s", "--keep-alive", "20s")
    with connect(server.addr, 10) as sock:
        reader = Reader(sock)
        sock.sendall(b"GET /first HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert reader.response().status == 200
        sock.sendall(b"GET /second HTTP/1.1\r\nHo")
        started = time.monotonic()
        data, closed, _ = read_until_closed(sock, 8.0)
        elapsed = time.monotonic() - started
    assert closed
    assert data.startswith(b"HTTP/1.1 408 "), data[:200]
    assert 0.7 <= elapsed <= 3.5, elapsed


# --- --keep-alive --------------------------------------------------------------------------------


def test_an_idle_kept_alive_connection_is_closed_silently_after_keep_alive(serve):
    server = serve(APP, "--threads", "2", "--keep-alive", "1s", "--header-timeout", "20s")
    with connect(server.addr, 10) as sock:
        reader = Reader(sock)
        sock.sendall(b"GET /ka HTTP/1.1\r\nHost: localhost\r\n\r\n")
        resp = reader.response()
        assert resp.status == 200
        assert "close" not in connection_tokens(resp)
        started = time.monotonic()
        data, closed, _ = read_until_closed(sock, 8.0)
        elapsed = time.monotonic() - started
    print(f"--keep-alive 1s: idle connection closed after {elapsed:.2f} s")
    assert closed, "idle keep-alive connection still open after 8 s"
    assert data == b"", f"expected a silent close, got {data[:200]!r}"
    assert 0.7 <= elapsed <= 3.5, f"closed after {elapsed:.2f} s"


def test_a_new_connection_that_sends_nothing_is_closed_after_keep_alive(serve):
    server = serve(APP, "--threads", "2", "--keep-alive", "1s", "--header-timeout", "20s")
    with connect(server.addr, 10) as sock:
        started = time.monotonic()
        data, closed, _ = read_until_closed(sock, 8.0)
        elapsed = time.monotonic() - started
    print(f"--keep-alive 1s: silent new connection closed after {elapsed:.2f} s")
    assert closed, "a connection that never sent a byte is still open after 8 s"
    assert data == b"", f"expected a silent close, got {data[:200]!r}"
    assert 0.7 <= elapsed <= 3.5, f"closed after {elapsed:.2f} s"


def test_keep_alive_does_not_close_a_connection_that_is_used_in_time(serve):
    server = serve(APP, "--threads", "2", "--keep-alive", "1s")
    with connect(server.addr, 10) as sock:
        reader = Reader(sock)
        for i in range(4):  # 4 requests 0.5 s apart: 2 s in total, never 1 s idle
            sock.sendall(f"GET /r{i} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
            assert reader.response().status == 200
            time.sleep(0.5)


# --- --body-timeout ------------------------------------------------------------------------------


def test_a_stalled_request_body_closes_the_connection_and_the_app_read_raises(serve):
    server = serve(
        APP,
        "--threads",
        "2",
        "--body-timeout",
        "1s",
        "--header-timeout",
        "20s",
        "--keep-alive",
        "20s",
    )
    with connect(server.addr, 10) as sock:
        sock.sendall(
            b"POST /stalled-body HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000\r\n\r\n"
            + b"p" * 100
        )
        started = time.monotonic()
        data, closed, _ = read_until_closed(sock, 10.0)
        elapsed = time.monotonic() - started
    print(f"--body-timeout 1s: closed after {elapsed:.2f} s; sent {data[:80]!r}")
    assert closed, "connection with a stalled body still open after 10 s"
    assert not data.startswith(b"HTTP/1.1 200"), data[:200]
    assert 0.7 <= elapsed <= 4.0, f"closed after {elapsed:.2f} s"
    server.wait_for(r"hard-read-error /stalled-body ", 5)
    assert "hard-read-done /stalled-body" not in server.log()
    assert request(server.addr, "GET", "/after").status == 200


def test_a_slow_but_progressing_body_is_not_cut_by_the_body_timeout(serve):
    server = serve(APP, "--threads", "2", "--body-timeout", "1s")
    with connect(server.addr, 10) as sock:
        sock.sendall(
            b"POST /slow-body HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n"
            b"Connection: close\r\n\r\n"
        )
        for _ in range(5):  # one byte every 0.5 s: 2.5 s in total, never 1 s without progress
            time.sleep(0.5)
            sock.sendall(b"s")
        resp = Reader(sock).response()
    assert resp.status == 200
    assert resp.body.startswith(b"5 "), resp.body


# --- --write-timeout -----------------------------------------------------------------------------


def test_a_client_that_stops_reading_is_cut_by_the_write_timeout_and_close_is_called(serve):
    server = serve(APP, "--threads", "2", "--write-timeout", "1s", "--keep-alive", "20s")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)  # no 32 MiB autotuning
    try:
        sock.settimeout(10)
        sock.connect(server.addr)
        sock.sendall(b"GET /stream-wt?kib=65536 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        started = time.monotonic()
        match = server.wait_for(r"hard-closed /stream-wt sent=(\d+)", 15)
        elapsed = time.monotonic() - started
        sent = int(match.group(1))
        data, closed, _ = read_until_closed(sock, 10.0)
    finally:
        sock.close()
    print(
        f"--write-timeout 1s: close() after {elapsed:.2f} s, app produced {sent} bytes, "
        f"client had {len(data)} bytes buffered"
    )
    assert 0.7 <= elapsed <= 5.0, f"close() called {elapsed:.2f} s after the request"
    assert sent < 64 * 1024 * 1024, "the app streamed everything to a client that never read"
    assert closed, "connection not closed after the write timeout"
    assert len(data) < 64 * 1024 * 1024
    assert not data.endswith(b"0\r\n\r\n"), "the response was completed"
    assert server.proc.poll() is None
    assert request(server.addr, "GET", "/after").status == 200


# --- slowloris -----------------------------------------------------------------------------------


SLOW_HEAD = b"GET /slowloris HTTP/1.1\r\nHost: localhost\r\nX-Slow: " + b"s" * 64


def open_many(addr, count: int) -> list[socket.socket]:
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(sock)
            sock.settimeout(5)
            sock.connect(addr)
            sock.setblocking(False)
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    return socks


def test_slowloris_500_connections_do_not_starve_a_normal_client(serve):
    raise_nofile()
    server = serve(APP, "--threads", "4")
    assert request(server.addr, "GET", "/warm-up").status == 200
    socks = open_many(server.addr, 500)
    stop = threading.Event()
    stats = {"rounds": 0, "send_errors": 0}

    def drip() -> None:
        """One header byte per connection every ~2 s, from this one thread."""
        index = 0
        while not stop.is_set() and index < len(SLOW_HEAD):
            for sock in socks:
                try:
                    sock.send(SLOW_HEAD[index : index + 1])
                except (BlockingIOError, BrokenPipeError, ConnectionResetError, OSError):
                    stats["send_errors"] += 1
            stats["rounds"] += 1
            index += 1
            stop.wait(2.0)

    thread = threading.Thread(target=drip, daemon=True)
    latencies = []
    fds_during = 0
    try:
        thread.start()
        deadline = time.monotonic() + 8.0
        while time.monotonic() < deadline - 0.7:
            time.sleep(0.7)
            started = time.monotonic()
            resp = request(server.addr, "GET", f"/normal{len(latencies)}", timeout=5)
            latencies.append(time.monotonic() - started)
            assert resp.status == 200
            fds_during = max(fds_during, server_fds(server))
    finally:
        stop.set()
        thread.join(5)
        still_open = 0
        for sock in socks:
            try:
                sock.recv(1)  # b"" = closed by the server, bytes = answered
            except BlockingIOError:
                still_open += 1  # nothing to read: still waiting for the rest of the head
            except OSError:
                pass
            sock.close()
    print(
        f"slowloris: {stats['rounds']} drip rounds, {stats['send_errors']} send errors, "
        f"{still_open}/500 still open at the end, server fds peak {fds_during}, "
        f"normal request latencies {[round(x, 3) for x in latencies]}"
    )
    assert len(latencies) >= 5
    assert max(latencies) < 1.0, latencies
    assert fds_during >= 450, f"server held only {fds_during} fds: the attack was not accepted"
    assert stats["rounds"] >= 4
    assert server.proc.poll() is None
    assert "hard-called /slowloris" not in server.log()


def test_slowloris_connections_are_all_cut_by_a_short_header_timeout(serve):
    raise_nofile()
    server = serve(APP, "--threads", "2", "--header-timeout", "1s")
    socks = open_many(server.addr, 200)
    selector = selectors.DefaultSelector()
    got = {sock.fileno(): b"" for sock in socks}
    closed_at: dict[int, float] = {}
    started = time.monotonic()
    try:
        for sock in socks:
            selector.register(sock, selectors.EVENT_READ)
        index = 0
        next_drip = started
        while len(closed_at) < len(socks) and time.monotonic() - started < 6.0:
            if time.monotonic() >= next_drip and index < len(SLOW_HEAD):
                for sock in socks:
                    if sock.fileno() not in closed_at:
                        try:
                            sock.send(SLOW_HEAD[index : index + 1])
                        except OSError:
                            pass
                index += 1
                next_drip += 0.3
            for key, _ in selector.select(timeout=0.05):
                sock = key.fileobj
                try:
                    piece = sock.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    piece = b""
                if piece:
                    got[sock.fileno()] += piece
                else:
                    closed_at[sock.fileno()] = time.monotonic() - started
                    selector.unregister(sock)
    finally:
        selector.close()
        for sock in socks:
            sock.close()
    answers = [data[:12] for data in got.values()]
    print(
        f"200 slowloris with --header-timeout 1s: {len(closed_at)} closed, last after "
        f"{max(closed_at.values(), default=0):.2f} s, "
        f"{sum(a.startswith(b'HTTP/1.1 408') for a in answers)} got 408"
    )
    assert len(closed_at) == len(socks), f"only {len(closed_at)}/200 closed within 6 s"
    assert max(closed_at.values()) <= 4.0
    assert all(a.startswith(b"HTTP/1.1 408") for a in answers), set(answers)
    assert server.proc.poll() is None
    assert request(server.addr, "GET", "/after").status == 200
