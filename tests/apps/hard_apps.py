"""Apps for the hardening tests (test_limits, test_timeouts, test_proxy, test_faults).

Every app reports what happened to it on ``wsgi.errors`` (one ``hard-... PATH ...`` line per
event) so a test can tell whether the app was called, whether a body read raised and whether
``close()`` ran, by waiting for those lines in the server's error log.
"""

import hashlib
import time
from urllib.parse import parse_qs


def _log(environ, message):
    errors = environ["wsgi.errors"]
    errors.write(message + "\n")
    errors.flush()


def _param(environ, name, default):
    values = parse_qs(environ.get("QUERY_STRING", "")).get(name)
    return type(default)(values[0]) if values else default


def _reply(start_response, body, status="200 OK"):
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def counted(environ, start_response):
    """Logs ``hard-called PATH``, reads the whole body in 1 MiB pieces and replies
    ``SIZE SHA256HEX`` of what it read. A read that raises is logged as
    ``hard-read-error PATH ExcType: message`` and re-raised."""
    path = environ["PATH_INFO"]
    _log(environ, f"hard-called {path}")
    stream = environ["wsgi.input"]
    size = 0
    digest = hashlib.sha256()
    try:
        while True:
            piece = stream.read(1 << 20)
            if not piece:
                break
            size += len(piece)
            digest.update(piece)
    except Exception as exc:
        _log(environ, f"hard-read-error {path} {type(exc).__name__}: {exc}")
        raise
    _log(environ, f"hard-read-done {path} {size}")
    return _reply(start_response, f"{size} {digest.hexdigest()}".encode())


class _Stream:
    """A response iterable of ``total`` bytes in ``chunk``-byte pieces (``delay`` seconds
    apart) whose close() logs ``hard-closed PATH sent=BYTES``."""

    def __init__(self, environ, total, chunk, delay):
        self.environ = environ
        self.path = environ["PATH_INFO"]
        self.total = total
        self.chunk = b"x" * chunk
        self.delay = delay
        self.sent = 0

    def __iter__(self):
        while self.sent < self.total:
            piece = self.chunk[: self.total - self.sent]
            self.sent += len(piece)
            yield piece
            if self.delay:
                time.sleep(self.delay)

    def close(self):
        _log(self.environ, f"hard-closed {self.path} sent={self.sent}")


def stream(environ, start_response):
    """Streams ``?kib=N`` KiB (default 64 MiB) in ``?chunk=BYTES`` pieces (default 64 KiB),
    ``?delay=SECONDS`` apart, with no Content-Length (chunked on HTTP/1.1)."""
    total = _param(environ, "kib", 65536) * 1024
    chunk = _param(environ, "chunk", 65536)
    delay = _param(environ, "delay", 0.0)
    _log(environ, f"hard-called {environ['PATH_INFO']}")
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return _Stream(environ, total, chunk, delay)


def app(environ, start_response):
    """Paths starting ``/stream`` go to ``stream``; everything else to ``counted``."""
    if environ["PATH_INFO"].startswith("/stream"):
        return stream(environ, start_response)
    return counted(environ, start_response)


application = app
