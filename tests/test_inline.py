"""`--inline auto` (the default): a route that has answered fast on the app threads is run by the
I/O thread itself while no app thread is busy; a route that blocks never is, and one that turns
slow goes back to the app threads (issue 17, ARCHITECTURE.md "Threads"). Each route of
``inline_apps`` reports the OS name of the thread that ran it."""

from __future__ import annotations

import json
import threading
import time

from helpers import Reader, connect, request

LEARN = 16  # fast calls in a row on the app threads before a route runs inline (inline.rs)


def call(server, path: str, body: bytes = b"") -> dict:
    resp = request(server.addr, "POST" if body else "GET", path, body=body)
    assert resp.status == 200, resp
    return json.loads(resp.body.split(b"\n", 1)[0])


def until_inline(server, path: str, tries: int = 200) -> dict:
    """Calls ``path`` until the I/O thread runs it (bounded); returns that answer."""
    threads = []
    for _ in range(tries):
        report = call(server, path)
        if report["thread"] == "wizgy-io":
            return report
        threads.append(report["thread"])
    raise AssertionError(f"{path} never ran inline in {tries} calls: {sorted(set(threads))}")


def test_a_fast_route_moves_to_the_io_thread_after_learning_and_keeps_its_thread_locals(serve):
    server = serve("inline_apps:app", "--threads", "4")
    first = [call(server, "/fast")["thread"] for _ in range(LEARN)]
    assert all(t.startswith("wizgy-app-") for t in first), first
    a = until_inline(server, "/fast")
    b = until_inline(server, "/fast")
    # One Python thread state for the I/O thread's whole life, as an app thread has.
    assert b["local_calls"] > a["local_calls"] >= 1, (a, b)


def test_with_inline_off_every_call_runs_on_an_app_thread(serve):
    server = serve("inline_apps:app", "--threads", "4", "--inline", "off")
    threads = {call(server, "/fast")["thread"] for _ in range(3 * LEARN)}
    assert threads and all(t.startswith("wizgy-app-") for t in threads), threads


def test_a_blocking_route_never_runs_inline(serve):
    server = serve("inline_apps:app", "--threads", "4")
    threads = {call(server, "/sleep")["thread"] for _ in range(2 * LEARN + 4)}
    assert "wizgy-io" not in threads, threads


def test_a_route_that_turns_slow_inline_goes_back_to_the_app_threads(serve):
    server = serve("inline_apps:app", "--threads", "4")
    for _ in range(5):
        until_inline(server, "/sometimes-slow")
        slow = call(server, "/sometimes-slow?slow=0.02")
        if slow["thread"] == "wizgy-io":
            break
        # It went to an app thread (one was still awake): that only restarted the streak.
    else:
        raise AssertionError("the slow call never ran inline")
    # Demoted for its backoff (10 s): a new streak of fast calls does not bring it back.
    threads = {call(server, "/sometimes-slow")["thread"] for _ in range(3 * LEARN)}
    assert "wizgy-io" not in threads, threads
    # Other routes are unaffected.
    assert until_inline(server, "/fast")["thread"] == "wizgy-io"


def test_inline_requests_read_their_body_and_a_big_response_arrives_whole(serve):
    server = serve("inline_apps:app", "--threads", "2")
    payload = bytes(range(256)) * 64  # 16 KiB: read with the head, before the app runs
    for _ in range(200):
        report = call(server, "/echo", payload)
        assert (report["body_len"], report["body_sum"]) == (len(payload), sum(payload))
        if report["thread"] == "wizgy-io":
            break
    else:
        raise AssertionError("/echo never ran inline")
    # 1 MiB from one call: held whole on the I/O thread, sent in full, and the route demoted.
    for _ in range(200):
        resp = request(server.addr, "GET", "/big")
        assert resp.status == 200
        head, rest = resp.body.split(b"\n", 1)
        assert len(rest) == 16 * 65536 and rest == b"x" * len(rest)
        if json.loads(head)["thread"] == "wizgy-io":
            break
    else:
        raise AssertionError("/big never ran inline")
    threads = {call(server, "/big")["thread"] for _ in range(2 * LEARN)}
    assert "wizgy-io" not in threads, threads


def test_while_blocking_requests_hold_app_threads_fast_ones_are_not_run_inline(serve):
    """Inline only while no app thread is awake: with sleeping requests in flight, a fast
    route's calls keep going through the app threads, and all complete."""
    server = serve("inline_apps:app", "--threads", "16")
    until_inline(server, "/fast")
    stop = time.monotonic() + 1.0
    errors: list[str] = []

    def sleeper() -> None:
        while time.monotonic() < stop:
            try:
                with connect(server.addr) as sock:
                    sock.sendall(b"GET /sleep HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    if Reader(sock).response().status != 200:
                        errors.append("status")
            except OSError as exc:  # pragma: no cover - reported below
                errors.append(repr(exc))

    threads = [threading.Thread(target=sleeper) for _ in range(8)]
    for t in threads:
        t.start()
    time.sleep(0.2)
    seen = [call(server, "/fast")["thread"] for _ in range(20)]
    for t in threads:
        t.join(10)
    assert not errors, errors
    assert "wizgy-io" not in seen, seen


def test_request_timeout_watches_inline_calls_too(serve):
    """A call that hangs on the I/O thread is reported like one on an app thread: its stack is
    logged and the worker recycled (its loop is stuck meanwhile: the cost inline pays, once)."""
    server = serve("inline_apps:app", "--threads", "2", "--request-timeout", "1s")
    for _ in range(5):
        until_inline(server, "/sometimes-slow")
        hung = call(server, "/sometimes-slow?slow=2.5")
        if hung["thread"] == "wizgy-io":
            break
    else:
        raise AssertionError("the hanging call never ran inline")
    server.wait_for(r"request timed out after 1\.0s: GET /sometimes-slow\?slow=2\.5", 3)
    server.wait_for(r'File "[^"\n]*inline_apps\.py", line \d+, in app', 3)
    server.wait_for(r"recycled: [^\n]*request-timeout", 5)
