"""Large request bodies stream through wsgi.input without being buffered in the server.

The body is generated on the fly in 64 KiB pieces (never held in memory), the app reads it in
64 KiB pieces and reports the byte count and zlib.crc32, and the server's RSS (supervisor and
workers: the sum over /proc/PID/status of the process tree) is sampled while the upload runs.
Run with ``-s`` to see the numbers.
"""

from __future__ import annotations

import random
import struct
import sys
import threading
import time
import zlib
from pathlib import Path

import pytest
from helpers import Reader, connect, request

PIECE = 64 * 1024
MIB = 1024 * 1024
GIB = 1024 * MIB
RSS_GROWTH_LIMIT = 8 * MIB  # issue #5: a 64 MiB upload adds < 8 MiB

_rng = random.Random(20260521)
BASES = [_rng.randbytes(PIECE) for _ in range(8)]

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="RSS is sampled from /proc/PID/status"
)


def pieces(total: int):
    """``total`` bytes as 64 KiB pieces, each unique (its index is stamped into it)."""
    for index in range(total // PIECE):
        yield struct.pack("<Q", index) + BASES[index % len(BASES)][8:]


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (the supervisor and its workers)."""
    pids = [pid]
    for parent in pids:
        for task in Path(f"/proc/{parent}/task").iterdir():
            pids.extend(int(child) for child in (task / "children").read_text().split())
    return pids


def rss_bytes(pid: int) -> int:
    """The summed VmRSS of ``pid`` and its descendants."""
    total = 0
    for member in process_tree(pid):
        for line in Path(f"/proc/{member}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024
    if total == 0:
        raise AssertionError(f"no VmRSS for {pid}")
    return total


class RssSampler(threading.Thread):
    """Samples a process's RSS every 10 ms and keeps the peak."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = rss_bytes(pid)
        self.samples = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(0.01):
            try:
                self.peak = max(self.peak, rss_bytes(self.pid))
                self.samples += 1
            except (OSError, AssertionError):
                return

    def stop(self) -> None:
        self._stop_event.set()
        self.join(5)


def chunk_frames(piece: bytes, index: int) -> bytes:
    """Chunked framing; every 16th piece is split into odd-sized chunks."""
    if index % 16:
        sizes = [len(piece)]
    else:
        sizes = [1, 4095, len(piece) - 4096]
    out = []
    offset = 0
    for size in sizes:
        out.append(b"%x\r\n" % size + piece[offset : offset + size] + b"\r\n")
        offset += size
    return b"".join(out)


def upload(server, total: int, chunked: bool, limit_seconds: float) -> dict:
    # Warm up (imports, thread start-up, first allocations) before taking the baseline.
    warm = request(server.addr, "POST", "/warm-up", body=b"x" * PIECE)
    assert warm.status == 200 and warm.json()["bytes"] == PIECE
    pid = server.proc.pid
    before = rss_bytes(pid)
    sampler = RssSampler(pid)
    sampler.start()
    started = time.monotonic()
    deadline = started + limit_seconds
    crc = 0
    sent = 0
    try:
        with connect(server.addr, timeout=10) as sock:
            framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {total}"
            sock.sendall(
                f"POST /upload HTTP/1.1\r\nHost: localhost\r\n{framing}\r\n"
                "Content-Type: application/octet-stream\r\nConnection: close\r\n\r\n".encode()
            )
            for index, piece in enumerate(pieces(total)):
                sock.sendall(chunk_frames(piece, index) if chunked else piece)
                crc = zlib.crc32(piece, crc)
                sent += len(piece)
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"upload too slow: {sent // MIB} MiB of {total // MIB} MiB "
                        f"in {limit_seconds} s"
                    )
            if chunked:
                sock.sendall(b"0\r\n\r\n")
            resp = Reader(sock).response()
        elapsed = time.monotonic() - started
    finally:
        sampler.stop()
    growth = sampler.peak - before
    kind = "chunked" if chunked else "Content-Length"
    print(
        f"\n{total // MIB} MiB {kind} upload: {elapsed:.2f} s ({total / MIB / elapsed:.0f} MiB/s); "
        f"server RSS before {before / MIB:.1f} MiB, peak {sampler.peak / MIB:.1f} MiB, "
        f"growth {growth / MIB:.1f} MiB ({sampler.samples} samples)"
    )
    assert resp.status == 200, (resp.status, resp.body[:200])
    result = resp.json()
    assert result["bytes"] == total
    assert result["crc32"] == crc
    assert 0 < result["largest_read"] <= PIECE
    assert elapsed < limit_seconds
    assert sampler.samples > 0
    assert growth < RSS_GROWTH_LIMIT, f"server RSS grew by {growth / MIB:.1f} MiB"
    return result


# Runs in CI on purpose (no skip/slow marker): on loopback it must finish well within 60 s.
@pytest.mark.timeout(90)
def test_a_1_gib_content_length_upload_streams_through_wsgi_input_in_bounded_memory(serve):
    server = serve("http_upload:app", "--threads", "2")
    upload(server, GIB, chunked=False, limit_seconds=60)


@pytest.mark.timeout(60)
def test_a_64_mib_chunked_upload_streams_through_wsgi_input_in_bounded_memory(serve):
    server = serve("http_upload:app", "--threads", "2")
    upload(server, 64 * MIB, chunked=True, limit_seconds=30)
