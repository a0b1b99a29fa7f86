"""Apps for the wsgi.input clauses of PEP 3333 (tests/test_input.py).

One WSGI callable, ``app``, routed on PATH_INFO. Each route reads wsgi.input one way and answers
JSON ``{"result": [...]}``: every piece of bytes it got, as latin-1 text, in order.
"""

import json
from urllib.parse import parse_qs

MAX_CALLS = 100000  # a read loop that never sees b"" must still end


def _query(environ):
    parsed = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    return {key: values[0] for key, values in parsed.items()}


def _until_empty(call):
    pieces = []
    for _ in range(MAX_CALLS):
        piece = call()
        pieces.append(piece)
        if not piece:
            break
    return pieces


def read(stream, query):
    return [stream.read()]


def read_n(stream, query):
    n = int(query["n"])
    return _until_empty(lambda: stream.read(n))


def read_minus_one(stream, query):
    return [stream.read(-1)]


def readline(stream, query):
    return _until_empty(stream.readline)


def readline_n(stream, query):
    n = int(query["n"])
    return _until_empty(lambda: stream.readline(n))


def readlines(stream, query):
    return stream.readlines()


def iterate(stream, query):
    return list(stream)


def eof_sticky(stream, query):
    first = stream.read()
    return [
        first,
        stream.read(),
        stream.read(),
        stream.read(10),
        stream.readline(),
        *stream.readlines(),
    ]


def read_n_then_read(stream, query):
    n = int(query["n"])
    return [stream.read(n), stream.read()]


def readline_then_read(stream, query):
    return [stream.readline(), stream.read()]


def read_big(stream, query):
    return [stream.read(100000)]


ROUTES = {
    "/read": read,
    "/read-n": read_n,
    "/read-minus-one": read_minus_one,
    "/readline": readline,
    "/readline-n": readline_n,
    "/readlines": readlines,
    "/iterate": iterate,
    "/eof-sticky": eof_sticky,
    "/read-n-then-read": read_n_then_read,
    "/readline-then-read": readline_then_read,
    "/read-big": read_big,
}


def app(environ, start_response):
    handler = ROUTES.get(environ["PATH_INFO"])
    if handler is None:
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"no such route"]
    pieces = handler(environ["wsgi.input"], _query(environ))
    payload = {
        "result": [piece.decode("latin-1") for piece in pieces],
        "types": sorted({type(piece).__name__ for piece in pieces}),
    }
    data = json.dumps(payload).encode()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
    )
    return [data]
