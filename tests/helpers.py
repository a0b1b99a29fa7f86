"""Raw-socket HTTP helpers for the tests: send exact bytes, parse exact responses.

The parser is deliberately strict and small so tests see precisely what wizgy wrote:
status line, header list in order, and the body framed as the headers say.
"""

from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass, field
from typing import Optional


@dataclass
class Response:
    status: int
    reason: str
    version: str
    headers: list[tuple[str, str]]
    body: bytes
    chunked: bool = False
    # Bytes of each chunk as framed on the wire (chunked responses only).
    chunks: list[bytes] = field(default_factory=list)

    def header(self, name: str) -> Optional[str]:
        """The first value of header ``name`` (case-insensitive), or None."""
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    def header_all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def json(self):
        return json.loads(self.body)


class IncompleteResponse(Exception):
    """The connection closed before the response was complete."""


def connect(addr, timeout: float = 10.0) -> socket.socket:
    """A TCP connection to ``addr`` (host, port) or a unix socket path (str)."""
    if isinstance(addr, str):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    else:
        sock = socket.socket(socket.AF_INET6 if ":" in addr[0] else socket.AF_INET)
    sock.settimeout(timeout)
    sock.connect(addr)
    return sock


class Reader:
    """Buffered reading of responses from one socket (keeps bytes between responses)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        if not data:
            return False
        self.buf += data
        return True

    def read_until(self, marker: bytes) -> bytes:
        while marker not in self.buf:
            if not self._fill():
                raise IncompleteResponse(f"closed before {marker!r}; have {self.buf[:200]!r}")
        index = self.buf.index(marker) + len(marker)
        out, self.buf = self.buf[:index], self.buf[index:]
        return out

    def read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._fill():
                raise IncompleteResponse(f"closed after {len(self.buf)} of {n} bytes")
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_to_close(self) -> bytes:
        while self._fill():
            pass
        out, self.buf = self.buf, b""
        return out

    def is_closed(self, timeout: float = 2.0) -> bool:
        """True if the peer closes (EOF or reset) with no further bytes within ``timeout``."""
        if self.buf:
            return False
        old = self.sock.gettimeout()
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(1)
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False
        finally:
            self.sock.settimeout(old)
        if data:
            self.buf += data
            return False
        return True

    def response(self, method: str = "GET") -> Response:
        """Read one full response; ``method`` matters only for HEAD (no body)."""
        head = self.read_until(b"\r\n\r\n").decode("latin-1")
        lines = head.split("\r\n")
        version, _, rest = lines[0].partition(" ")
        code, _, reason = rest.partition(" ")
        headers = []
        for line in lines[1:]:
            if not line:
                continue
            name, _, value = line.partition(":")
            headers.append((name, value.strip()))
        resp = Response(int(code), reason, version, headers, b"")
        status = resp.status
        if method == "HEAD" or 100 <= status < 200 or status in (204, 304):
            return resp
        te = resp.header("transfer-encoding")
        cl = resp.header("content-length")
        if te is not None:
            assert te.lower() == "chunked", te
            resp.chunked = True
            body = b""
            while True:
                size_line = self.read_until(b"\r\n")
                size = int(size_line.split(b";")[0], 16)
                if size == 0:
                    self.read_until(b"\r\n")  # no trailers from wizgy
                    break
                chunk = self.read_exact(size)
                resp.chunks.append(chunk)
                body += chunk
                if self.read_exact(2) != b"\r\n":
                    raise AssertionError("chunk not terminated by CRLF")
            resp.body = body
        elif cl is not None:
            resp.body = self.read_exact(int(cl))
        else:
            resp.body = self.read_to_close()
        return resp


def request(
    addr,
    method: str = "GET",
    path: str = "/",
    headers: Optional[dict] = None,
    body: bytes = b"",
    version: str = "HTTP/1.1",
    timeout: float = 10.0,
) -> Response:
    """One request on a fresh connection (``Connection: close``), parsed strictly."""
    all_headers = {"Host": "localhost", "Connection": "close"}
    if body:
        all_headers["Content-Length"] = str(len(body))
    all_headers.update(headers or {})
    head = f"{method} {path} {version}\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in all_headers.items()
    )
    with connect(addr, timeout) as sock:
        sock.sendall(head.encode("latin-1") + b"\r\n" + body)
        return Reader(sock).response(method)


def raw(addr, data: bytes, timeout: float = 5.0) -> bytes:
    """Send ``data`` and return every byte the server writes until it closes (or ``timeout``)."""
    with connect(addr, timeout) as sock:
        sock.sendall(data)
        out = b""
        try:
            while True:
                piece = sock.recv(65536)
                if not piece:
                    break
                out += piece
        except (socket.timeout, ConnectionResetError):
            pass
        return out


def read_until_closed(sock: socket.socket, timeout: float) -> tuple[bytes, bool]:
    """Everything the server sends until it closes (True) or ``timeout`` passes (False)."""
    deadline = time.monotonic() + timeout
    out = b""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return out, False
        sock.settimeout(remaining)
        try:
            piece = sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            return out, True
        except socket.timeout:
            return out, False
        if not piece:
            return out, True
        out += piece
