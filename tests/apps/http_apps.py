"""Small apps for tests/test_http.py and tests/test_concurrency.py.

Each callable is a plain WSGI app; the tests pick one with ``http_apps:NAME``.
"""

import threading
import time


def _reply(start_response, body, extra=()):
    start_response(
        "200 OK",
        [("Content-Type", "text/plain"), ("Content-Length", str(len(body))), *extra],
    )
    return [body]


def _target(environ):
    query = environ.get("QUERY_STRING", "")
    return environ["PATH_INFO"] + ("?" + query if query else "")


def path(environ, start_response):
    """Body is ``METHOD PATH[?QUERY]``; the request body is read (and ignored) first."""
    stream = environ["wsgi.input"]
    while stream.read(65536):
        pass
    body = f"{environ['REQUEST_METHOD']} {_target(environ)}".encode("latin-1")
    return _reply(start_response, body)


def noread(environ, start_response):
    """Like ``path`` but never touches wsgi.input (an unread request body stays unread)."""
    body = f"{environ['REQUEST_METHOD']} {_target(environ)}".encode("latin-1")
    return _reply(start_response, body)


def fixed(environ, start_response):
    """Always ``hello world`` with a Content-Length (the same for GET and HEAD)."""
    return _reply(start_response, b"hello world", [("X-Fixed", "yes")])


def nolength(environ, start_response):
    """A generator response with no Content-Length: the server must frame it itself."""
    start_response("200 OK", [("Content-Type", "text/plain")])

    def body():
        yield b"hello "
        yield b""
        yield b"chunked "
        yield b"world"

    return body()


def server_header(environ, start_response):
    """Supplies its own Server header, which must win over ``Server: wizgy``."""
    return _reply(start_response, b"custom server", [("Server", "custom/1.0")])


def sleepy(environ, start_response):
    """Sleeps 200 ms (releasing the GIL) and then names the thread that ran it."""
    time.sleep(0.2)
    return _reply(start_response, threading.current_thread().name.encode("utf-8", "replace"))


def spin(environ, start_response):
    """Runs Python for 3 ms without releasing the GIL (``/sleep``: sleeps 200 ms, releasing
    it; ``/mixed``: 2 ms of Python, then 6 ms of sleep), then names the thread that ran it."""
    if environ["PATH_INFO"] == "/sleep":
        return sleepy(environ, start_response)
    if environ["PATH_INFO"] == "/mixed":
        # A typical view: some Python, then a wait outside it (a database query).
        deadline = time.perf_counter() + 0.002
        while time.perf_counter() < deadline:
            pass
        time.sleep(0.006)
        return _reply(start_response, threading.current_thread().name.encode())
    deadline = time.perf_counter() + 0.003
    while time.perf_counter() < deadline:
        pass
    return _reply(start_response, threading.current_thread().name.encode("utf-8", "replace"))
