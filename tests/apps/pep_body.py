"""Apps for the response-iterable clauses of PEP 3333 (tests/test_response_body.py).

One WSGI callable, ``app``, routed on PATH_INFO; parameters come from the query string.
``mark`` is a file path the app writes ``closed`` to when the server calls close();
``flag`` is a file path the test creates to let a waiting generator go on.
"""

import contextvars
import os
import threading
import time
from urllib.parse import parse_qs

from routing import router

TEXT = [("Content-Type", "text/plain")]


def _query(environ):
    parsed = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    return {key: values[0] for key, values in parsed.items()}


def _wait_for_file(path, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.02)
    return os.path.exists(path)


class ClosingBody:
    """A response iterable that records close() by writing ``closed`` to ``mark``."""

    def __init__(self, mark, chunks):
        self.mark = mark
        self.chunks = chunks

    def __iter__(self):
        return iter(self.chunks())

    def close(self):
        with open(self.mark, "w") as f:
            f.write("closed")


def as_list(environ, start_response):
    start_response("200 OK", TEXT)
    return [b"li", b"st", b"-body"]


def as_tuple(environ, start_response):
    start_response("200 OK", TEXT)
    return (b"tu", b"ple", b"-body")


def generator(environ, start_response):
    """Yield one chunk, wait for the client's flag file, then yield the rest."""
    flag = _query(environ)["flag"]
    start_response("200 OK", TEXT)

    def body():
        yield b"first-chunk;"
        yield b"second-chunk" if _wait_for_file(flag) else b"flag-timeout"

    return body()


def closing(environ, start_response):
    start_response("200 OK", TEXT)
    return ClosingBody(_query(environ)["mark"], lambda: iter([b"a", b"b"]))


class ClosingList(list):
    """A list subclass with close(): the server must still call it."""

    mark = ""

    def close(self):
        with open(self.mark, "w") as f:
            f.write("closed")


def closing_list(environ, start_response):
    start_response("200 OK", TEXT)
    body = ClosingList([b"li", b"st"])
    body.mark = _query(environ)["mark"]
    return body


def closing_error(environ, start_response):
    start_response("200 OK", TEXT)

    def chunks():
        yield b"before-error;"
        raise RuntimeError("pep-error-mid-iteration")

    return ClosingBody(_query(environ)["mark"], chunks)


def closing_disconnect(environ, start_response):
    """64 KiB chunks for up to 20 s: only a disconnect should end it early."""
    start_response("200 OK", TEXT)

    def chunks():
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            yield b"x" * 65536
            time.sleep(0.005)

    return ClosingBody(_query(environ)["mark"], chunks)


def str_chunk(environ, start_response):
    start_response("200 OK", TEXT)
    return ["a str, not bytes"]


def empty_chunks(environ, start_response):
    """A generator (a list's length could be computed up front, leaving no chunks to check)."""
    start_response("200 OK", TEXT)
    return (chunk for chunk in [b"", b"a", b"", b"", b"b", b""])


def empty_then_error(environ, start_response):
    """Only an empty chunk precedes the error, so no headers may have been sent yet."""
    start_response("200 OK", TEXT)

    def body():
        yield b""
        raise RuntimeError("pep-error-after-empty-chunk")

    return body()


def no_length(environ, start_response):
    """Produced as it goes: the server cannot know the length before sending the headers."""
    start_response("200 OK", TEXT)
    return (chunk for chunk in [b"hello ", b"world"])


def declared_length(environ, start_response):
    query = _query(environ)
    start_response("200 OK", [*TEXT, ("Content-Length", query["declared"])])
    return [query["body"].encode("latin-1")]


def head(environ, start_response):
    body = b"head-body-bytes"
    start_response("200 OK", [*TEXT, ("Content-Length", str(len(body)))])
    return [body]


def head_generator(environ, start_response):
    start_response("200 OK", TEXT)
    return (chunk for chunk in [b"head-", b"generator-", b"body"])


def no_body_status(environ, start_response):
    code = _query(environ)["code"]
    reason = {"204": "No Content", "304": "Not Modified"}[code]
    start_response(f"{code} {reason}", [])
    return [b"forbidden-body"]


def _mixed_pieces():
    """Pieces on both sides of the server's copy/zero-copy threshold (4 KiB), each distinct."""
    sizes = [1, 100, 4095, 4096, 4097, 3, 10240, 0, 70000, 7, 300000, 2, 16384, 5000, 1]
    return [bytes([65 + i % 26]) * size for i, size in enumerate(sizes)]


def mixed(environ, start_response):
    """``?as=list``: a list with Content-Length; ``?as=generator``: chunked, one per yield."""
    pieces = _mixed_pieces()
    if _query(environ).get("as") == "list":
        length = sum(len(piece) for piece in pieces)
        start_response("200 OK", TEXT + [("Content-Length", str(length))])
        return pieces
    start_response("200 OK", TEXT)
    return iter(pieces)


def produce(environ, start_response):
    """48 fresh 1 MiB chunks; before each yield, the number yielded so far goes to ``mark``."""
    mark = _query(environ)["mark"]
    start_response("200 OK", TEXT)

    def body():
        for i in range(48):
            with open(mark, "w") as f:
                f.write(str(i))
            yield bytes([48 + i % 10]) * (1 << 20)
        with open(mark, "w") as f:
            f.write("48")

    return body()


def _numbered_chunk(i):
    """Chunk ``i`` of /numbered and /owned: 64 KiB of the byte ``i % 251``."""
    return bytes([i % 251]) * 65536


def numbered(environ, start_response):
    """``n`` numbered chunks (see ``_numbered_chunk``); close() writes ``mark``."""
    query = _query(environ)
    count = int(query["n"])
    start_response("200 OK", TEXT)
    return ClosingBody(query["mark"], lambda: (_numbered_chunk(i) for i in range(count)))


_local = threading.local()
_owner = contextvars.ContextVar("stream_owner", default=None)


def owned(environ, start_response):
    """``n`` numbered chunks (see ``_numbered_chunk``), each made on the thread,
    with the thread-local and context-variable values, that the stream started with; any chunk
    made otherwise appends why to the file ``bad``."""
    query = _query(environ)
    count, owner, bad = int(query["n"]), query["id"], query["bad"]
    start_response("200 OK", TEXT)

    def chunks():
        ident = threading.get_ident()
        _local.owner = owner
        _owner.set(owner)
        for i in range(count):
            seen = (threading.get_ident() == ident, getattr(_local, "owner", None), _owner.get())
            if seen != (True, owner, owner):
                with open(bad, "a") as f:
                    f.write(f"chunk {i} of {owner}: same thread, thread-local, context: {seen}\n")
            yield _numbered_chunk(i)

    return chunks()


ROUTES = {
    "/mixed": mixed,
    "/owned": owned,
    "/numbered": numbered,
    "/produce": produce,
    "/list": as_list,
    "/tuple": as_tuple,
    "/generator": generator,
    "/closing": closing,
    "/closing-error": closing_error,
    "/closing-list": closing_list,
    "/closing-disconnect": closing_disconnect,
    "/str-chunk": str_chunk,
    "/empty-chunks": empty_chunks,
    "/empty-then-error": empty_then_error,
    "/no-length": no_length,
    "/declared-length": declared_length,
    "/head": head,
    "/head-generator": head_generator,
    "/no-body-status": no_body_status,
}


app = router(ROUTES)
