"""Apps for the start_response() clauses of PEP 3333 (tests/test_start_response.py).

One WSGI callable, ``app``, routed on PATH_INFO; parameters come from the query string.
"""

import os
import sys
import time
from urllib.parse import parse_qs

from routing import router

TEXT = [("Content-Type", "text/plain")]

# start_response() status arguments that PEP 3333 does not allow ("NNN reason" only).
BAD_STATUSES = {
    "no-reason": "200",
    "four-digits": "2000 OK",
    "two-digits": "20 OK",
    "letters": "abc OK",
    "no-space": "200OK",
    "bytes": b"200 OK",
}

# One bad header each; the marker ``X-Injected`` must never reach the wire as a header.
BAD_HEADERS = {
    "crlf-in-value": ("X-Test", "a\r\nX-Injected: yes"),
    "lf-in-value": ("X-Test", "a\nX-Injected: yes"),
    "cr-in-value": ("X-Test", "a\rX-Injected: yes"),
    "nul-in-value": ("X-Test", "a\x00b"),
    "crlf-in-name": ("X-Test\r\nX-Injected", "yes"),
    "nul-in-name": ("X-Te\x00st", "v"),
    "space-in-name": ("Bad Name", "v"),
    "colon-in-name": ("Bad:Name", "v"),
    "at-in-name": ("Bad@Name", "v"),
    "empty-name": ("", "v"),
    "bytes-name": (b"X-Bytes", "v"),
    "bytes-value": ("X-Bytes", b"v"),
    "non-latin1-value": ("X-Euro", "\u20ac"),
    "hop-connection": ("Connection", "keep-alive"),
    "hop-keep-alive": ("Keep-Alive", "timeout=5"),
    "hop-transfer-encoding": ("Transfer-Encoding", "chunked"),
    "hop-transfer-encoding-lowercase": ("transfer-encoding", "chunked"),
    "hop-te": ("TE", "trailers"),
    "hop-trailer": ("Trailer", "X-Checksum"),
    "hop-upgrade": ("Upgrade", "websocket"),
    "hop-proxy-authenticate": ("Proxy-Authenticate", "Basic"),
    "hop-proxy-authorization": ("Proxy-Authorization", "Basic Zm9vOmJhcg=="),
}


def _query(environ):
    parsed = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    return {key: values[0] for key, values in parsed.items()}


def _log(environ, line):
    environ["wsgi.errors"].write(line + "\n")
    environ["wsgi.errors"].flush()


def returns_write(environ, start_response):
    write = start_response("200 OK", TEXT)
    return [b"callable" if callable(write) else b"not-callable"]


def write_then_iterable(environ, start_response):
    write = start_response("200 OK", TEXT)
    write(b"one;")
    write(b"two;")
    return [b"three;", b"four"]


def write_is_immediate(environ, start_response):
    """write() something, then wait for the client to create the flag file before returning."""
    flag = _query(environ)["flag"]
    write = start_response("200 OK", TEXT)
    write(b"written-early;")
    deadline = time.monotonic() + 10
    while not os.path.exists(flag) and time.monotonic() < deadline:
        time.sleep(0.02)
    return [b"returned-late" if os.path.exists(flag) else b"flag-timeout"]


def twice(environ, start_response):
    start_response("200 OK", TEXT)
    try:
        start_response("201 Created", TEXT)
    except Exception as exc:
        return [type(exc).__name__.encode()]
    return [b"no-exception"]


def exc_info_before_headers(environ, start_response):
    start_response("200 OK", [*TEXT, ("X-First", "1")])
    try:
        raise ValueError("pep-handled-error")
    except ValueError:
        start_response("500 Oops", [*TEXT, ("X-Second", "2")], sys.exc_info())
    return [b"replaced"]


def exc_info_after_headers(environ, start_response):
    """Headers go out with write(); then start_response(exc_info) must re-raise that error."""
    write = start_response("200 OK", TEXT)
    write(b"partial;")
    try:
        raise ValueError("pep-original-error")
    except ValueError:
        exc_info = sys.exc_info()
        try:
            start_response("500 Oops", TEXT, exc_info)
        except BaseException as reraised:
            same = reraised is exc_info[1]
            token = _query(environ).get("token", "-")
            _log(environ, f"pep-reraised {token} same={same} type={type(reraised).__name__}")
            raise
    _log(environ, f"pep-reraised {_query(environ).get('token', '-')} none")
    return [b"not-reraised"]


def lazy(environ, start_response):
    """start_response() is only called when the server first iterates the body."""

    def body():
        start_response("200 OK", [*TEXT, ("X-Lazy", "yes")])
        yield b"lazy-body"

    return body()


def status(environ, start_response):
    query = _query(environ)
    if "case" in query:
        value = BAD_STATUSES[query["case"]]
    else:
        value = query["s"]
    start_response(value, TEXT)
    return [b"status-body"]


def bad_header(environ, start_response):
    """The bad header is passed to start_response; any exception propagates."""
    start_response("200 OK", [*TEXT, BAD_HEADERS[_query(environ)["case"]]])
    return [b"should-not-be-sent"]


def bad_header_caught(environ, start_response):
    """The app catches what start_response raised and answers 299 with the exception type."""
    try:
        start_response("200 OK", [*TEXT, BAD_HEADERS[_query(environ)["case"]]])
    except Exception as exc:
        start_response("299 Caught", TEXT, sys.exc_info())
        return [b"raised:" + type(exc).__name__.encode()]
    return [b"not-raised"]


def good_headers(environ, start_response):
    start_response(
        "200 OK",
        [
            *TEXT,
            ("X-Token-Name!#$%&'*+-.^_`|~", "v"),
            ("X-Spaces", "a  b\tc"),
            ("X-Latin", "caf\xe9"),
        ],
    )
    return [b"ok"]


ROUTES = {
    "/returns-write": returns_write,
    "/write-then-iterable": write_then_iterable,
    "/write-is-immediate": write_is_immediate,
    "/twice": twice,
    "/exc-info-before-headers": exc_info_before_headers,
    "/exc-info-after-headers": exc_info_after_headers,
    "/lazy": lazy,
    "/status": status,
    "/bad-header": bad_header,
    "/bad-header-caught": bad_header_caught,
    "/good-headers": good_headers,
}


app = router(ROUTES)
