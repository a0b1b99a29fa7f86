"""Real frameworks, unmodified, served by wizgy: Flask, Django, Pyramid, Bottle and Falcon.

Each ``tests/apps/fw_<name>.py`` implements the same routes (JSON, a urlencoded form, a
multipart upload, a streamed body, a cookie round trip, the framework's own 404, an exception
in a view, and a percent-encoded path segment), so one parametrized suite covers all five.
Every check goes through a real socket to a real ``wizgy`` process; one server per framework
(each in its own process, since Django settings are process-global).
"""

from __future__ import annotations

import hashlib
import re
import time
from typing import Iterator
from urllib.parse import urlencode

import pytest
from conftest import APPS, WIZGY, Server
from helpers import Reader, connect, request

FRAMEWORKS = ["flask", "django", "pyramid", "bottle", "falcon"]
STREAM_BODY = b"".join(f"chunk {i} of 5\n".encode() for i in range(5))


@pytest.fixture(scope="module", params=FRAMEWORKS)
def fw(request) -> Iterator[tuple[str, Server]]:
    """``(name, server)``: ``wizgy --threads 4 fw_<name>:app``, stopped by PID at teardown."""
    name = request.param
    server = Server([*WIZGY, "--bind", "127.0.0.1:0", "--threads", "4", f"fw_{name}:app"], APPS)
    try:
        server.wait_ready()
        yield name, server
    finally:
        server.stop()


def multipart(fields: list[tuple[str, str | None, bytes]], boundary: str) -> bytes:
    """A multipart/form-data body from ``(name, filename or None, content)`` parts."""
    out = b""
    for name, filename, content in fields:
        out += f"--{boundary}\r\n".encode()
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        out += f"Content-Disposition: {disposition}\r\n".encode()
        if filename is not None:
            out += b"Content-Type: application/octet-stream\r\n"
        out += b"\r\n" + content + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


def upload_payload(size: int = 150_000) -> bytes:
    """Deterministic bytes that also contain CRLFs, dashes and near-boundary sequences."""
    block = hashlib.sha256(b"wizgy").digest() + b"\r\n--\r\n\r\n--wizgyboundar\x00\xff"
    data = b""
    counter = 0
    while len(data) < size:
        data += hashlib.sha256(counter.to_bytes(4, "big")).digest() + block
        counter += 1
    return data[:size]


def wait_in_log(server: Server, offset: int, pattern: str, timeout: float = 10.0) -> str:
    """The error log after ``offset`` once ``pattern`` (regex) appears in it."""
    regex = re.compile(pattern)
    deadline = time.monotonic() + timeout
    while True:
        text = server.log()[offset:]
        if regex.search(text):
            return text
        if time.monotonic() > deadline:
            raise AssertionError(f"{pattern!r} not in the error log within {timeout}s:\n{text}")
        time.sleep(0.05)


def test_traceback_logged_only_for_boom(fw):
    """Ordinary routes (404 included) log no traceback; /boom's traceback reaches the log.

    Flask, Django (its ``django.request`` logger, configured to stderr), Bottle and Falcon log
    the exception themselves; Pyramid lets it propagate and wizgy logs it. This is the first
    test of the module, so it runs before any other /boom on each framework's server.
    """
    name, server = fw
    offset = len(server.log())
    for method, path in [("GET", "/json"), ("GET", "/missing"), ("GET", "/stream")]:
        assert request(server.addr, method, path).status in (200, 404)
    form = request(
        server.addr,
        "POST",
        "/form",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        body=b"name=a&n=1",
    )
    assert form.status == 200

    assert request(server.addr, "GET", "/boom").status == 500
    marker = f"boom from {name}"
    text = wait_in_log(server, offset, re.escape(marker))
    before_boom = text[: text.index("Traceback")] if "Traceback" in text else text
    assert "Traceback" in text, text
    assert "Traceback" not in before_boom, before_boom
    assert "RuntimeError" in text


def test_json(fw):
    name, server = fw
    resp = request(server.addr, "GET", "/json")
    assert resp.status == 200, resp.body
    assert resp.header("Content-Type").startswith("application/json")
    assert resp.json() == {"framework": name, "ok": True}
    assert resp.header("Server") == "wizgy"
    assert resp.header("Date")


def test_form_urlencoded(fw):
    _, server = fw
    fields = {"name": "Zoë & co = 100%", "n": "42"}
    body = urlencode(fields).encode()
    resp = request(
        server.addr,
        "POST",
        "/form",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        body=body,
    )
    assert resp.status == 200, resp.body
    assert resp.json() == fields


def test_multipart_upload(fw):
    _, server = fw
    data = upload_payload()
    boundary = "wizgyboundary7MA4YWxkTrZu0gW"
    body = multipart([("note", None, b"a text field first"), ("file", "data.bin", data)], boundary)
    resp = request(
        server.addr,
        "POST",
        "/upload",
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        body=body,
    )
    assert resp.status == 200, resp.body
    assert resp.json() == {
        "filename": "data.bin",
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }


def test_stream_is_chunked_on_http11(fw):
    _, server = fw
    resp = request(server.addr, "GET", "/stream")
    assert resp.status == 200
    assert resp.header("Content-Length") is None
    assert resp.chunked, resp.headers
    assert resp.body == STREAM_BODY


def test_stream_is_close_delimited_on_http10(fw):
    _, server = fw
    resp = request(server.addr, "GET", "/stream", version="HTTP/1.0")
    assert resp.status == 200
    assert resp.header("Transfer-Encoding") is None
    assert resp.body == STREAM_BODY


def test_cookie_round_trip(fw):
    _, server = fw
    resp = request(server.addr, "GET", "/cookie/set")
    assert resp.status == 200
    cookies = [c for c in resp.header_all("Set-Cookie") if c.startswith("flavor=")]
    assert len(cookies) == 1, resp.headers
    pair = cookies[0].split(";")[0].strip()
    assert pair in ("flavor=oatmeal", 'flavor="oatmeal"'), cookies[0]

    resp = request(server.addr, "GET", "/cookie/get", headers={"Cookie": f"other=1; {pair}"})
    assert resp.status == 200
    assert resp.json() == {"flavor": "oatmeal"}

    resp = request(server.addr, "GET", "/cookie/get")
    assert resp.status == 200
    assert resp.json() == {"flavor": None}


def test_cookie_headers_joined(fw):
    """Two Cookie header lines reach the framework as one (joined with "; ")."""
    _, server = fw
    with_two = (
        b"GET /cookie/get HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
        b"Cookie: other=1\r\nCookie: flavor=oatmeal\r\n\r\n"
    )
    with connect(server.addr) as sock:
        sock.sendall(with_two)
        resp = Reader(sock).response()
    assert resp.status == 200
    assert resp.json() == {"flavor": "oatmeal"}


def test_missing_is_the_framework_404(fw):
    _, server = fw
    resp = request(server.addr, "GET", "/missing")
    assert resp.status == 404
    assert resp.header("Server") == "wizgy"


def test_boom_is_500_and_server_keeps_serving(fw):
    name, server = fw
    resp = request(server.addr, "GET", "/boom")
    assert resp.status == 500
    after = request(server.addr, "GET", "/json")
    assert after.status == 200
    assert after.json() == {"framework": name, "ok": True}


@pytest.mark.parametrize(
    ("raw", "decoded"),
    [("caf%C3%A9", "café"), ("hello%20world", "hello world"), ("plain", "plain")],
)
def test_percent_encoded_path_segment(fw, raw, decoded):
    _, server = fw
    resp = request(server.addr, "GET", f"/path/{raw}")
    assert resp.status == 200, resp.body
    assert resp.json() == {"segment": decoded}


def _stopped_log(server: Server) -> str:
    """Stop the server and return its complete error log (after the pipe is drained)."""
    server.stop()
    deadline = time.monotonic() + 10
    while server._pumps_done < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    return server.log()


def test_flask_under_wsgiref_validator(serve):
    """fw_flask wrapped in ``wsgiref.validate.validator``: no assertion, no WSGIWarning.

    POST /form is left out on purpose: with ``wsgi.input_terminated`` set, Werkzeug reads a
    urlencoded body with ``wsgi.input.read()`` (no size), which the validator itself forbids
    (its ``InputWrapper.read`` asserts exactly one argument), whatever the server does.
    """
    server = serve("fw_validated:app", "--threads", "4")
    resp = request(server.addr, "GET", "/json")
    assert resp.status == 200, resp.body
    assert resp.json() == {"framework": "flask", "ok": True}

    resp = request(server.addr, "GET", "/stream")
    assert resp.status == 200
    assert resp.body == STREAM_BODY

    resp = request(server.addr, "GET", "/cookie/set")
    assert resp.status == 200
    resp = request(server.addr, "GET", "/cookie/get", headers={"Cookie": "flavor=oatmeal"})
    assert resp.json() == {"flavor": "oatmeal"}

    resp = request(server.addr, "GET", "/path/caf%C3%A9")
    assert resp.json() == {"segment": "café"}

    resp = request(server.addr, "GET", "/missing")
    assert resp.status == 404

    data = upload_payload(20_000)
    boundary = "validatedboundary"
    resp = request(
        server.addr,
        "POST",
        "/upload",
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        body=multipart([("file", "data.bin", data)], boundary),
    )
    assert resp.status == 200, resp.body
    assert resp.json()["sha256"] == hashlib.sha256(data).hexdigest()

    resp = request(server.addr, "HEAD", "/json")
    assert resp.status == 200

    log = _stopped_log(server)
    for bad in ("WSGIWarning", "AssertionError", "Traceback", "Exception ignored"):
        assert bad not in log, log
