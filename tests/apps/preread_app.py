"""Apps for tests/test_preread.py: small Content-Length bodies read before the app is called.

Every route logs ``preread-called PATH`` on ``wsgi.errors`` when it is called and answers JSON
with ``time.monotonic()`` readings (the same clock as the test process on Linux), so a test can
tell when the app ran relative to what the client sent.
"""

import hashlib
import json
import time

from hard_apps import _log, _param
from routing import router


def _called(environ):
    called_at = time.monotonic()
    _log(environ, f"preread-called {environ['PATH_INFO']}")
    return called_at


def _json(start_response, payload):
    data = json.dumps(payload).encode()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
    )
    return [data]


def read_all(environ, start_response):
    """One ``read()`` of the whole body: when the app was called, how long the read took, and
    the size and SHA-256 of what it returned."""
    called_at = _called(environ)
    started = time.monotonic()
    body = environ["wsgi.input"].read()
    read_seconds = time.monotonic() - started
    return _json(
        start_response,
        {
            "called_at": called_at,
            "read_seconds": read_seconds,
            "size": len(body),
            "sha256": hashlib.sha256(body).hexdigest(),
        },
    )


def pieces(environ, start_response):
    """Reads the body with ``read(n)`` until EOF: the size of every piece, and the total size
    and SHA-256."""
    _called(environ)
    size = _param(environ, "n", 16384)
    stream = environ["wsgi.input"]
    digest = hashlib.sha256()
    sizes = []
    while True:
        piece = stream.read(size)
        if not piece:
            break
        sizes.append(len(piece))
        digest.update(piece)
    return _json(start_response, {"sizes": sizes, "size": sum(sizes), "sha256": digest.hexdigest()})


def expect(environ, start_response):
    """Waits ``delay`` seconds before the first read (the server must not answer
    ``100 Continue`` before it), then reads the whole body."""
    called_at = _called(environ)
    time.sleep(_param(environ, "delay", 0.3))
    read_started = time.monotonic()
    body = environ["wsgi.input"].read()
    return _json(
        start_response,
        {
            "called_at": called_at,
            "read_started": read_started,
            "size": len(body),
            "sha256": hashlib.sha256(body).hexdigest(),
        },
    )


def partial(environ, start_response):
    """Reads with ``read(n)`` until EOF or an error and reports both: the bytes read, and the
    error (``Type: message``) or None. Answers 200 either way; logs
    ``preread-partial PATH got=N error=...``."""
    called_at = _called(environ)
    size = _param(environ, "n", 4)
    stream = environ["wsgi.input"]
    got = b""
    error = None
    try:
        while True:
            piece = stream.read(size)
            if not piece:
                break
            got += piece
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
    _log(environ, f"preread-partial {environ['PATH_INFO']} got={len(got)} error={error}")
    return _json(
        start_response,
        {
            "called_at": called_at,
            "content_length": environ.get("CONTENT_LENGTH"),
            "got": got.decode("latin-1"),
            "error": error,
        },
    )


def partial_raise(environ, start_response):
    """``read()`` the whole body and let a read error propagate out of the app."""
    _called(environ)
    try:
        body = environ["wsgi.input"].read()
    except Exception as exc:
        _log(environ, f"preread-raised {environ['PATH_INFO']} {type(exc).__name__}: {exc}")
        raise
    return _json(start_response, {"size": len(body)})


def hello(environ, start_response):
    body = b"hello"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
    return [body]


app = router(
    {
        "/read": read_all,
        "/pieces": pieces,
        "/expect": expect,
        "/partial": partial,
        "/partial-raise": partial_raise,
        "/hello": hello,
    }
)
