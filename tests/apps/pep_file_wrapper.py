"""Apps for wsgi.file_wrapper (tests/test_file_wrapper.py).

One WSGI callable, ``app``, routed on PATH_INFO. Query parameters: ``path`` (the file to serve),
``offset`` (seek there first), ``length`` (send it as Content-Length; otherwise none is sent),
``mark`` (a file path the app writes ``closed`` to when the wrapped object's close() runs).
"""

import io
from urllib.parse import parse_qs


def _query(environ):
    parsed = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    return {key: values[0] for key, values in parsed.items()}


def _write_mark(mark):
    if mark:
        with open(mark, "w") as f:
            f.write("closed")


class TrackedFile(io.FileIO):
    """A real file (it has a working fileno()) whose close() is recorded in ``mark``."""

    def __init__(self, path, mark):
        super().__init__(path, "r")
        self.mark = mark

    def close(self):
        if not self.closed:
            _write_mark(self.mark)
        super().close()


class ReadOnly:
    """A file-like object with only read() and close(): no fileno, no seek."""

    def __init__(self, raw, mark):
        self.raw = raw
        self.mark = mark

    def read(self, size=-1):
        return self.raw.read(size)

    def close(self):
        _write_mark(self.mark)
        self.raw.close()


def _headers(query):
    headers = [("Content-Type", "application/octet-stream")]
    if "length" in query:
        headers.append(("Content-Length", query["length"]))
    return headers


def real_file(environ, start_response, query):
    f = open(query["path"], "rb")
    if "offset" in query:
        f.seek(int(query["offset"]))
    start_response("200 OK", _headers(query))
    return environ["wsgi.file_wrapper"](f, 8192)


def tracked_file(environ, start_response, query):
    f = TrackedFile(query["path"], query["mark"])
    start_response("200 OK", _headers(query))
    return environ["wsgi.file_wrapper"](f)


def read_only(environ, start_response, query):
    f = ReadOnly(open(query["path"], "rb"), query.get("mark"))
    start_response("200 OK", _headers(query))
    return environ["wsgi.file_wrapper"](f, 4096)


def bytes_io(environ, start_response, query):
    with open(query["path"], "rb") as f:
        data = f.read()
    start_response("200 OK", _headers(query))
    return environ["wsgi.file_wrapper"](io.BytesIO(data))


def app_iterates(environ, start_response, query):
    """The app itself iterates what file_wrapper returned (PEP 3333: it must be iterable)."""
    with open(query["path"], "rb") as f:
        wrapped = environ["wsgi.file_wrapper"](io.BytesIO(f.read()), 1000)
    pieces = list(wrapped)
    if hasattr(wrapped, "close"):
        wrapped.close()
    body = b"".join(pieces)
    start_response(
        "200 OK",
        [
            ("Content-Type", "application/octet-stream"),
            ("Content-Length", str(len(body))),
            ("X-Pieces", str(len(pieces))),
        ],
    )
    return [body]


ROUTES = {
    "/file": real_file,
    "/tracked-file": tracked_file,
    "/read-only": read_only,
    "/bytes-io": bytes_io,
    "/app-iterates": app_iterates,
}


def app(environ, start_response):
    handler = ROUTES.get(environ["PATH_INFO"])
    if handler is None:
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"no such route"]
    return handler(environ, start_response, _query(environ))
