"""wsgi.file_wrapper: real files (sendfile), seeked files, objects without fileno, close(),
against tests/apps/pep_file_wrapper.py."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from urllib.parse import urlencode

import pytest
from conftest import Server, running
from helpers import Reader, Response, connect

APP = "pep_file_wrapper:app"
SIZE = 1024 * 1024


@pytest.fixture(scope="module")
def server():
    with running(APP, "--threads", "4") as srv:
        yield srv


@pytest.fixture
def data_file(tmp_path) -> tuple[Path, bytes]:
    """1 MiB of random bytes in a temporary file: (path, contents)."""
    data = os.urandom(SIZE)
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    return path, data


def target(route: str, **params) -> str:
    return f"{route}?{urlencode({key: str(value) for key, value in params.items()})}"


def get(server: Server, path: str, method: str = "GET", version: str = "HTTP/1.1") -> Response:
    with connect(server.addr, timeout=10) as sock:
        sock.sendall(
            f"{method} {path} {version}\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode()
        )
        return Reader(sock).response(method)


def wait_for_file(path: Path, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    return path.exists()


def test_real_file_is_served_byte_exact_with_content_length(server, data_file):
    path, data = data_file
    resp = get(server, target("/file", path=path, length=SIZE))
    assert resp.status == 200
    assert resp.header("Content-Length") == str(SIZE)
    assert resp.body == data


def test_real_file_is_served_byte_exact_without_content_length(server, data_file):
    path, data = data_file
    resp = get(server, target("/file", path=path))
    assert resp.status == 200
    assert resp.body == data


def test_real_file_is_served_close_delimited_on_http_1_0(server, data_file):
    path, data = data_file
    resp = get(server, target("/file", path=path), version="HTTP/1.0")
    assert resp.status == 200
    assert resp.body == data


def test_real_file_seeked_to_an_offset_is_served_from_that_offset(server, data_file):
    path, data = data_file
    offset = 123457
    resp = get(server, target("/file", path=path, offset=offset, length=SIZE - offset))
    assert resp.status == 200
    assert resp.body == data[offset:]


def test_real_file_seeked_to_an_offset_without_content_length_is_served_from_it(server, data_file):
    path, data = data_file
    offset = 70001
    resp = get(server, target("/file", path=path, offset=offset))
    assert resp.status == 200
    assert resp.body == data[offset:]


def test_real_file_with_a_smaller_content_length_is_truncated_to_it(server, data_file):
    path, data = data_file
    with connect(server.addr, timeout=10) as sock:
        request = f"GET {target('/file', path=path, length=1000)} HTTP/1.1\r\n"
        sock.sendall(request.encode() + b"Host: localhost\r\nConnection: close\r\n\r\n")
        reader = Reader(sock)
        head = reader.read_until(b"\r\n\r\n")
        try:
            rest = reader.read_to_close()
        except socket.timeout:
            pytest.fail("connection still open after the declared 1000 bytes")
    assert b"content-length: 1000\r\n" in head.lower()
    assert rest == data[:1000]


def test_real_file_head_request_sends_no_body_bytes(server, data_file):
    path, _ = data_file
    with connect(server.addr, timeout=10) as sock:
        request = f"HEAD {target('/file', path=path, length=SIZE)} HTTP/1.1\r\n"
        sock.sendall(request.encode() + b"Host: localhost\r\nConnection: close\r\n\r\n")
        reader = Reader(sock)
        head = reader.read_until(b"\r\n\r\n")
        rest = reader.read_to_close()
    assert head.startswith(b"HTTP/1.1 200 ")
    assert rest == b""


def test_object_without_fileno_is_served_through_read(server, data_file):
    path, data = data_file
    resp = get(server, target("/read-only", path=path))
    assert resp.status == 200
    assert resp.body == data


def test_object_without_fileno_is_served_with_content_length(server, data_file):
    path, data = data_file
    resp = get(server, target("/read-only", path=path, length=SIZE))
    assert resp.status == 200
    assert resp.body == data


def test_bytesio_whose_fileno_raises_is_served_through_read(server, data_file):
    path, data = data_file
    resp = get(server, target("/bytes-io", path=path))
    assert resp.status == 200
    assert resp.body == data


def test_close_of_a_wrapped_real_file_is_called(server, data_file, tmp_path):
    path, data = data_file
    mark = tmp_path / "closed"
    resp = get(server, target("/tracked-file", path=path, mark=mark, length=SIZE))
    assert resp.body == data
    assert wait_for_file(mark), "close() of the wrapped file was not called"


def test_close_of_a_wrapped_object_without_fileno_is_called(server, data_file, tmp_path):
    path, data = data_file
    mark = tmp_path / "closed"
    resp = get(server, target("/read-only", path=path, mark=mark))
    assert resp.body == data
    assert wait_for_file(mark), "close() of the wrapped object was not called"


def test_file_wrapper_result_can_be_iterated_by_the_app(server, tmp_path):
    data = os.urandom(10000)
    path = tmp_path / "small.bin"
    path.write_bytes(data)
    resp = get(server, target("/app-iterates", path=path))
    assert resp.status == 200
    assert resp.body == data
    assert int(resp.header("X-Pieces")) >= 1


def test_real_file_without_content_length_gets_the_file_size_as_content_length(server, data_file):
    path, data = data_file
    resp = get(server, target("/file", path=path))
    assert resp.header("Content-Length") == str(len(data))
    assert resp.header("Transfer-Encoding") is None
    assert resp.body == data
