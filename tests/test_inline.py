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


def slow_inline(server, path: str, seconds: float) -> None:
    """Makes one call of ``path`` that sleeps ``seconds`` run inline (bounded tries)."""
    for _ in range(5):
        until_inline(server, path)
        if call(server, f"{path}?slow={seconds}")["thread"] == "wizgy-io":
            return
        # It went to an app thread (one was still awake): that only cost the score.
    raise AssertionError("the slow call never ran inline")


def test_a_route_slow_inline_and_again_on_an_app_thread_goes_back_to_the_app_threads(serve):
    server = serve("inline_apps:app", "--threads", "4")
    slow_inline(server, "/sometimes-slow", 0.02)
    # Suspect: its next call is judged on an app thread, where it is slow too: demoted.
    assert call(server, "/sometimes-slow?slow=0.02")["thread"].startswith("wizgy-app-")
    # Demoted for its backoff (10 s): a new score of fast calls does not bring it back.
    threads = {call(server, "/sometimes-slow")["thread"] for _ in range(3 * LEARN)}
    assert "wizgy-io" not in threads, threads
    # Other routes are unaffected.
    assert until_inline(server, "/fast")["thread"] == "wizgy-io"


def test_one_slow_inline_call_that_is_fast_on_an_app_thread_keeps_its_route_inline(serve):
    """A slow inline call may be the I/O thread's fault (preempted on a busy machine): the next
    call is judged on an app thread, and, fast there, the route runs inline again at once."""
    server = serve("inline_apps:app", "--threads", "4")
    slow_inline(server, "/sometimes-slow", 0.01)
    assert call(server, "/sometimes-slow")["thread"].startswith("wizgy-app-")
    # Not demoted (that would be 10 s): inline again within a few calls.
    until_inline(server, "/sometimes-slow", tries=5)


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


def test_under_64_busy_connections_a_fast_route_settles_on_the_io_thread(serve):
    """The benchmark's shape: 64 keep-alive connections, each sending its next request as soon
    as its answer arrives. While the app threads are still draining the first burst, the I/O
    thread must not find the GIL taken when it starts an inline call (a parking app thread
    that still holds it), or the route is demoted for seconds and the load never runs inline.
    After the first second, nearly every call runs on the I/O thread."""
    import asyncio

    server = serve("inline_apps:app", "--threads", "8", "--log-level", "debug")
    host, port = server.addr
    started = time.monotonic()
    late: list[str] = []

    async def client() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            for _ in range(3000):  # bounded in count and (below) in time
                now = time.monotonic() - started
                if now > 2.0:
                    break
                writer.write(b"GET /fast HTTP/1.1\r\nHost: x\r\n\r\n")
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
                body = await reader.readexactly(length)
                if now > 1.0:
                    late.append(json.loads(body)["thread"])
        finally:
            writer.close()

    async def main() -> None:
        await asyncio.wait_for(asyncio.gather(*(client() for _ in range(64))), 20)

    asyncio.run(main())
    assert len(late) > 500, len(late)
    inline = sum(t == "wizgy-io" for t in late) / len(late)
    assert inline > 0.9, (inline, sorted(set(late)), server.log()[-3000:])
