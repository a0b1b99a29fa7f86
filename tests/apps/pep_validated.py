"""Apps wrapped in ``wsgiref.validate.validator`` (tests/test_validator.py).

Every warning is an error in this process, so a WSGIWarning about what the server passed in
becomes an exception, a 500 and a traceback in the error log. The validator also reports an
iterable that the server never closed (on stderr, when the iterable is garbage collected).
"""

import time
import warnings
from wsgiref.validate import validator

warnings.simplefilter("error")

TEXT = ("Content-Type", "text/plain")


def _read_in_pieces(stream, size):
    pieces = []
    while True:
        piece = stream.read(size)
        if not piece:
            return pieces
        pieces.append(piece)


def get(environ, start_response):
    body = b"validated-get"
    start_response("200 OK", [TEXT, ("Content-Length", str(len(body)))])
    return [body]


def post(environ, start_response):
    body = b"".join(_read_in_pieces(environ["wsgi.input"], 7))
    start_response("200 OK", [TEXT, ("Content-Length", str(len(body)))])
    return [body]


def post_lines(environ, start_response):
    stream = environ["wsgi.input"]
    first = stream.readline()
    second = stream.readline(3)
    rest = list(stream)
    body = b"|".join([first, second, *rest])
    start_response("200 OK", [TEXT, ("Content-Length", str(len(body)))])
    return [body]


def stream(environ, start_response):
    start_response("200 OK", [TEXT])

    def body():
        for i in range(5):
            yield b"chunk-%d;" % i
            time.sleep(0.02)

    return body()


def write(environ, start_response):
    writer = start_response("200 OK", [TEXT])
    writer(b"written;")
    return [b"returned"]


def head(environ, start_response):
    body = b"validated-head-body"
    start_response("200 OK", [TEXT, ("Content-Length", str(len(body)))])
    return [body]


ROUTES = {
    "/get": get,
    "/post": post,
    "/post-lines": post_lines,
    "/stream": stream,
    "/write": write,
    "/head": head,
}


def _inner(environ, start_response):
    handler = ROUTES.get(environ["PATH_INFO"])
    if handler is None:
        start_response("404 Not Found", [TEXT])
        return [b"no such route"]
    return handler(environ, start_response)


app = validator(_inner)
application = app
