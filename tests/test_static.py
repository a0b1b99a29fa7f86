"""--static PREFIX=DIR: files served by the Rust core, driven from outside over real sockets.

One server for most tests, with a tree made per module: ``site/`` at ``/static``, ``deep/`` at
``/static/deep`` (longest prefix), ``html/`` at ``/`` (the seeds' layout: ``/`` is
index.html), a secret file beside them that no URL may reach, and ``static_app:app``, which
answers ``app: METHOD PATH`` for whatever falls through.
"""

from __future__ import annotations

import email.utils
import hashlib
import os
import socket
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import WIZGY, Server, run_wizgy
from helpers import Reader, connect, raw, read_until_closed, request
from proc_util import children, wait_until

APP = "static_app:app"
SECRET = b"TOP-SECRET-never-served"
CSS = b"body { color: #123456 }\n"
JS = b"console.log('identity');\n" * 40
JS_BR = b"pretend-brotli-bytes"
JS_GZ = b"pretend-gzip-bytes!!"
TEXT = bytes(range(256)) * 40  # 10,240 bytes for ranges


def build_tree(base: Path) -> Path:
    (base / "secret.txt").write_bytes(SECRET)
    site = base / "site"
    for sub in ("sub", "nodir", ".git", ".well-known", "deep-in-site"):
        (site / sub).mkdir(parents=True)
    (site / "a.css").write_bytes(CSS)
    (site / "data.bin").write_bytes(TEXT)
    (site / "app.js").write_bytes(JS)
    (site / "app.js.br").write_bytes(JS_BR)
    (site / "app.js.gz").write_bytes(JS_GZ)
    (site / "only-gz.txt").write_bytes(b"plain text\n")
    (site / "only-gz.txt.gz").write_bytes(b"gz bytes")
    (site / "sub" / "index.html").write_bytes(b"<p>sub index</p>")
    (site / "sub" / "page.txt").write_bytes(b"page")
    (site / "nodir" / "file.txt").write_bytes(b"in nodir")
    (site / ".hidden.txt").write_bytes(SECRET)
    (site / ".git" / "config").write_bytes(SECRET)
    (site / ".well-known" / "security.txt").write_bytes(b"Contact: mailto:x@example.com\n")
    (site / "link-in").symlink_to("a.css")
    (site / "link-out").symlink_to("../secret.txt")
    (site / "link-abs").symlink_to(base / "secret.txt")
    (site / "link-dir-out").symlink_to("..")
    (site / "sub" / "up").symlink_to("..")
    deep = base / "deep"
    deep.mkdir()
    (deep / "x.txt").write_bytes(b"from deep")
    html = base / "html"
    html.mkdir()
    (html / "index.html").write_bytes(b"<html>root index</html>")
    return base


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    return build_tree(tmp_path_factory.mktemp("static"))


@pytest.fixture(scope="module")
def server(tree):
    # html is relative: DIR is taken from where wizgy starts (cwd=tree), before --chdir.
    argv = [
        *WIZGY,
        "--bind",
        "127.0.0.1:0",
        "--static",
        f"/static={tree / 'site'}",
        "--static",
        f"/static/deep={tree / 'deep'}",
        "--static",
        "/=html",
        "--static-max-age",
        "3600",
        "--chdir",
        str(Path(__file__).parent / "apps"),
        APP,
    ]
    srv = Server(argv, tree)
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


def get(server, path, headers=None, method="GET"):
    return request(server.addr, method, path, headers=headers)


def app_answered(resp, method, path):
    return resp.status == 200 and resp.body == f"app: {method} {path}".encode()


# --- routing -----------------------------------------------------------------------------


def test_a_file_is_served_with_type_length_validators_and_cache_control(server, tree):
    resp = get(server, "/static/a.css")
    assert resp.status == 200
    assert resp.body == CSS
    assert resp.header("Content-Type") == "text/css; charset=utf-8"
    assert resp.header("Content-Length") == str(len(CSS))
    assert resp.header("Accept-Ranges") == "bytes"
    assert resp.header("Cache-Control") == "public, max-age=3600"
    etag = resp.header("ETag")
    assert etag.startswith('"') and etag.endswith('"') and not etag.startswith("W/"), etag
    mtime = int(os.stat(tree / "site" / "a.css").st_mtime)
    assert resp.header("Last-Modified") == email.utils.formatdate(mtime, usegmt=True)
    assert resp.header("Vary") is None, "no sibling: the reply does not vary"
    png = get(server, "/static/data.bin")
    assert png.header("Content-Type") == "application/octet-stream"


def test_head_gets_the_get_fields_and_no_body(server):
    sock = connect(server.addr)
    with sock:
        sock.sendall(
            b"HEAD /static/a.css HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /static/a.css HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        reader = Reader(sock)
        head = reader.response("HEAD")
        get_resp = reader.response()
    assert head.status == 200 and head.body == b""
    assert head.header("Content-Length") == str(len(CSS))
    assert head.header("ETag") == get_resp.header("ETag")
    assert get_resp.body == CSS, "HEAD sent body bytes that the next response swallowed"


def test_methods_other_than_get_and_head_fall_through_to_the_app(server):
    for method in ("POST", "PUT", "DELETE", "OPTIONS", "PATCH"):
        resp = request(
            server.addr, method, "/static/a.css", body=b"x" if method != "OPTIONS" else b""
        )
        assert app_answered(resp, method, "/static/a.css"), (method, resp.status, resp.body)


def test_what_names_no_servable_file_falls_through_to_the_app(server):
    for path in (
        "/static/missing.css",
        "/static/nodir/",
        "/static/nodir",
        "/static/a.css/",
        "/staticx",
        "/staticx/a.css",
        "/nothing-here",
    ):
        assert app_answered(get(server, path), "GET", path), path


def test_the_longest_prefix_wins(server):
    resp = get(server, "/static/deep/x.txt")
    assert (resp.status, resp.body) == (200, b"from deep")
    # /static/deep-in-site is a sibling segment, not under /static/deep
    assert app_answered(get(server, "/static/deep-in-site/"), "GET", "/static/deep-in-site/")


def test_directories_serve_index_html_and_redirect_without_their_slash(server):
    resp = get(server, "/static/sub/")
    assert (resp.status, resp.body) == (200, b"<p>sub index</p>")
    assert resp.header("Content-Type") == "text/html; charset=utf-8"
    resp = get(server, "/static/sub?a=1&b=%20")
    assert resp.status == 301
    assert resp.header("Location") == "/static/sub/?a=1&b=%20"
    assert resp.body == b""
    root = get(server, "/")
    assert (root.status, root.body) == (200, b"<html>root index</html>")
    assert get(server, "/index.html").body == b"<html>root index</html>"


def test_a_static_hit_keeps_the_connection_and_pipelines(server):
    with connect(server.addr) as sock:
        sock.sendall(
            b"GET /static/a.css HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /app HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /static/sub/page.txt HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        reader = Reader(sock)
        bodies = [reader.response().body for _ in range(3)]
    assert bodies == [CSS, b"app: GET /app", b"page"]


def test_http_1_0_clients_get_the_file_and_keep_alive_only_when_asked(server):
    out = raw(server.addr, b"GET /static/a.css HTTP/1.0\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200 ") and out.endswith(b"\r\n\r\n" + CSS), out
    assert b"Connection: close\r\n" in out
    with connect(server.addr) as sock:
        sock.sendall(b"GET /static/a.css HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        reader = Reader(sock)
        first = reader.response()
        assert first.header("Connection") == "keep-alive" and first.body == CSS
        sock.sendall(b"HEAD /static/sub/page.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        assert reader.response("HEAD").header("Content-Length") == "4"


def test_a_body_sent_with_a_static_get_is_drained_and_the_connection_kept(server):
    with connect(server.addr) as sock:
        sock.sendall(
            b"GET /static/a.css HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
            b"GET /static/sub/page.txt HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        reader = Reader(sock)
        assert reader.response().body == CSS
        assert reader.response().body == b"page"


# --- path safety -------------------------------------------------------------------------

HOSTILE = [
    "/static/../secret.txt",
    "/static/sub/../../secret.txt",
    "/static/%2e%2e/secret.txt",
    "/static/%2E%2E/secret.txt",
    "/static/.%2e/secret.txt",
    "/static/sub%2f..%2f..%2fsecret.txt",
    "/static/sub%2F..%2F..%2Fsecret.txt",
    "/static/..%5csecret.txt",
    "/static/..\\secret.txt",
    "/static/sub\\..\\..\\secret.txt",
    "/static/%c0%ae%c0%ae/secret.txt",
    "/static/%c0%ae%c0%ae%c0%afsecret.txt",
    "/static/%e0%80%ae%e0%80%ae/secret.txt",
    "/static/a.css%00.html",
    "/static/%00",
    "/static//secret.txt",
    "//secret.txt",
    "/static/link-out",
    "/static/link-abs",
    "/static/link-dir-out/secret.txt",
    "/static/sub/up/../secret.txt",
    "/static/sub/up/link-out",
    "/static/.hidden.txt",
    "/static/%2ehidden.txt",
    "/static/.git/config",
    "/static/sub/.git/config",
    "/static/.well-known/../.hidden.txt",
    "/static/deep/../secret.txt",
    "/../secret.txt",
    "/%2e%2e/secret.txt",
    "/static/%252e%252e/secret.txt",
]


@pytest.mark.parametrize("path", HOSTILE)
def test_hostile_paths_never_serve_a_file_outside_dir_or_a_hidden_one(server, path):
    out = raw(
        server.addr,
        f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode("latin-1"),
    )
    assert SECRET not in out, out[:300]
    status = int(out.split(b" ", 2)[1]) if out.startswith(b"HTTP/1.1 ") else None
    # never a file: the app's answer (fall-through) or a refusal from the parser
    assert b"\r\n\r\napp: GET " in out or (status is not None and status >= 400), out[:300]
    assert b"Accept-Ranges: bytes" not in out, f"served as a static file: {out[:300]!r}"


def test_symlinks_inside_dir_and_well_known_are_served(server):
    assert get(server, "/static/link-in").body == CSS
    resp = get(server, "/static/.well-known/security.txt")
    assert (resp.status, resp.body) == (200, b"Contact: mailto:x@example.com\n")


def test_a_symlink_swapped_to_point_outside_is_refused_at_once(server, tree):
    link = tree / "site" / "swap"
    link.symlink_to("a.css")
    try:
        assert get(server, "/static/swap").body == CSS
        link.unlink()
        link.symlink_to("../secret.txt")
        resp = get(server, "/static/swap")
        assert SECRET not in resp.body and app_answered(resp, "GET", "/static/swap")
    finally:
        link.unlink()


# --- conditional requests ----------------------------------------------------------------


def validators(server, path="/static/a.css"):
    resp = get(server, path)
    return resp.header("ETag"), resp.header("Last-Modified")


def test_if_none_match_and_if_modified_since_answer_304(server):
    etag, modified = validators(server)
    weak = "W/" + etag
    for fields in (
        {"If-None-Match": etag},
        {"If-None-Match": f'"nope", {etag}'},
        {"If-None-Match": weak},
        {"If-None-Match": "*"},
        {"If-Modified-Since": modified},
        {"If-Modified-Since": "Fri, 01 Jan 2100 00:00:00 GMT"},
    ):
        resp = get(server, "/static/a.css", fields)
        assert resp.status == 304, fields
        assert resp.body == b"" and resp.header("Content-Length") is None
        assert resp.header("ETag") == etag
        assert resp.header("Cache-Control") == "public, max-age=3600"
    for fields in (
        {"If-None-Match": '"nope"'},
        {"If-Modified-Since": "Sat, 01 Jan 2000 00:00:00 GMT"},
        {"If-Modified-Since": "not a date"},
        # If-None-Match takes precedence over If-Modified-Since (RFC 9110 §13.2.2)
        {"If-None-Match": '"nope"', "If-Modified-Since": modified},
    ):
        resp = get(server, "/static/a.css", fields)
        assert (resp.status, resp.body) == (200, CSS), fields


def test_304_keeps_the_connection_for_the_next_request(server):
    etag, _ = validators(server)
    with connect(server.addr) as sock:
        req = f"GET /static/a.css HTTP/1.1\r\nHost: x\r\nIf-None-Match: {etag}\r\n\r\n".encode()
        sock.sendall(req + b"GET /static/sub/page.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        reader = Reader(sock)
        assert reader.response().status == 304
        assert reader.response().body == b"page"


def test_if_match_and_if_unmodified_since_answer_412(server):
    etag, modified = validators(server)
    for fields in (
        {"If-Match": '"nope"'},
        {"If-Match": "W/" + etag},
        {"If-Unmodified-Since": "Sat, 01 Jan 2000 00:00:00 GMT"},
    ):
        resp = get(server, "/static/a.css", fields)
        assert (resp.status, resp.body) == (412, b""), fields
    for fields in ({"If-Match": etag}, {"If-Match": "*"}, {"If-Unmodified-Since": modified}):
        assert get(server, "/static/a.css", fields).body == CSS, fields


# --- ranges ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "start", "end"),
    [
        ("0-9", 0, 9),
        ("100-", 100, len(TEXT) - 1),
        ("-256", len(TEXT) - 256, len(TEXT) - 1),
        ("10-99999", 10, len(TEXT) - 1),
    ],
)
def test_a_single_range_answers_206_with_content_range(server, spec, start, end):
    resp = get(server, "/static/data.bin", {"Range": f"bytes={spec}"})
    assert resp.status == 206
    assert resp.header("Content-Range") == f"bytes {start}-{end}/{len(TEXT)}"
    assert resp.body == TEXT[start : end + 1]
    assert resp.header("Content-Length") == str(end - start + 1)


def test_an_unsatisfiable_range_answers_416_with_the_size(server):
    for spec in (f"{len(TEXT)}-", "-0", f"{len(TEXT) + 5}-{len(TEXT) + 9}"):
        resp = get(server, "/static/data.bin", {"Range": f"bytes={spec}"})
        assert resp.status == 416, spec
        assert resp.header("Content-Range") == f"bytes */{len(TEXT)}"
        assert resp.body == b""


def test_several_or_malformed_ranges_get_the_whole_file_never_more(server):
    overlapping = "bytes=" + ",".join(["0-"] * 200)
    for value in ("bytes=0-1,5-6", overlapping, "bytes=5-1", "items=0-1", "bytes=x"):
        resp = get(server, "/static/data.bin", {"Range": value})
        assert (resp.status, resp.body) == (200, TEXT), value


def test_if_range_applies_the_range_only_to_the_same_representation(server):
    etag, modified = validators(server, "/static/data.bin")
    for if_range, status in ((etag, 206), (modified, 206), ('"stale"', 200), ("W/" + etag, 200)):
        resp = get(server, "/static/data.bin", {"Range": "bytes=0-3", "If-Range": if_range})
        assert resp.status == status, if_range
        assert resp.body == (TEXT[:4] if status == 206 else TEXT)


# --- precompressed siblings --------------------------------------------------------------


def test_a_precompressed_sibling_is_chosen_by_accept_encoding(server):
    identity = get(server, "/static/app.js")
    assert identity.body == JS and identity.header("Content-Encoding") is None
    assert identity.header("Vary") == "Accept-Encoding", "a sibling exists: identity varies too"
    cases = [
        ("gzip, deflate, br", JS_BR, "br"),
        ("gzip", JS_GZ, "gzip"),
        ("br;q=0.5, gzip;q=0.9", JS_GZ, "gzip"),
        ("br;q=0, gzip;q=0", JS, None),
        ("*", JS_BR, "br"),
        ("*;q=0.2, br;q=0", JS_GZ, "gzip"),
        ("identity", JS, None),
    ]
    etags = {identity.header("ETag")}
    for accept, body, coding in cases:
        resp = get(server, "/static/app.js", {"Accept-Encoding": accept})
        assert resp.body == body, accept
        assert resp.header("Content-Encoding") == coding, accept
        assert resp.header("Content-Type") == "text/javascript; charset=utf-8", accept
        assert resp.header("Vary") == "Accept-Encoding", accept
        etags.add(resp.header("ETag"))
    assert len(etags) == 3, f"each representation has its own ETag: {etags}"
    br = get(server, "/static/app.js", {"Accept-Encoding": "br"})
    revalidated = get(
        server, "/static/app.js", {"Accept-Encoding": "br", "If-None-Match": br.header("ETag")}
    )
    assert revalidated.status == 304 and revalidated.header("Vary") == "Accept-Encoding"
    assert get(server, "/static/app.js", {"If-None-Match": br.header("ETag")}).status == 200


def test_a_refused_sibling_still_says_vary(server):
    resp = get(server, "/static/only-gz.txt", {"Accept-Encoding": "br"})
    assert resp.body == b"plain text\n" and resp.header("Content-Encoding") is None
    assert resp.header("Vary") == "Accept-Encoding"


def test_siblings_added_or_removed_beside_an_unchanged_file_are_seen_within_seconds(server, tree):
    plain = tree / "site" / "late.js"
    plain.write_bytes(JS)
    sibling = tree / "site" / "late.js.br"
    br = {"Accept-Encoding": "br"}
    try:
        first = get(server, "/static/late.js", br)
        assert (first.body, first.header("Vary")) == (JS, None)
        sibling.write_bytes(JS_BR)

        def served(body):
            resp = get(server, "/static/late.js", br)
            assert resp.status == 200 and resp.body in (JS, JS_BR), resp.status
            return resp.body == body

        wait_until(lambda: served(JS_BR), 5, interval=0.1, what="the new sibling to be sent")
        sibling.unlink()
        # a sibling that vanished is never a failed response: the file itself is sent
        wait_until(lambda: served(JS), 5, interval=0.1, what="the file itself again")
    finally:
        plain.unlink()
        sibling.unlink(missing_ok=True)


# --- sending -----------------------------------------------------------------------------


def worker_of(server) -> int:
    return wait_until(lambda: next(iter(children(server.proc.pid)), None), 10, what="a worker")


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def big(tree) -> tuple[Path, str]:
    path = tree / "site" / "big.bin"
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        block = os.urandom(1 << 20)
        for i in range(64):
            piece = bytes([i]) + block[1:]
            f.write(piece)
            digest.update(piece)
    return path, digest.hexdigest()


def fetch_hash(server, path, recv_size=1 << 20, pause=0.0, limit_s=60.0):
    """GET ``path``; the body's sha256 and length, read ``recv_size`` at a time."""
    deadline = time.monotonic() + limit_s
    with connect(server.addr, timeout=20) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        reader = Reader(sock)
        head = reader.read_until(b"\r\n\r\n").decode("latin-1")
        length = int(
            next(
                line.split(":")[1]
                for line in head.split("\r\n")
                if line.lower().startswith("content-length")
            )
        )
        digest = hashlib.sha256(reader.buf)
        got = len(reader.buf)
        while got < length and time.monotonic() < deadline:
            piece = sock.recv(recv_size)
            if not piece:
                break
            digest.update(piece)
            got += len(piece)
            if pause:
                time.sleep(pause)
    return digest.hexdigest(), got, length


def test_a_64_mib_file_arrives_whole_with_memory_flat(server, big):
    _, want = big
    pid = worker_of(server)
    fetch_hash(server, "/static/a.css")
    before = rss(pid)
    for _ in range(2):
        digest, got, length = fetch_hash(server, "/static/big.bin")
        assert (got, length) == (64 << 20, 64 << 20)
        assert digest == want
    grown = rss(pid) - before
    print(f"worker RSS {before >> 20} MiB before, grew {grown / 1024:.0f} KiB over 128 MiB sent")
    assert grown < 8 << 20, f"RSS grew {grown} bytes sending 128 MiB: not flat"


def test_a_slow_reader_gets_every_byte_while_others_are_served(server, big):
    _, want = big
    result = {}

    def slow():
        result["slow"] = fetch_hash(server, "/static/big.bin", recv_size=1 << 20, pause=0.005)

    reader = threading.Thread(target=slow)
    reader.start()
    try:
        # the I/O thread is not held by the slow transfer: other hits are answered meanwhile
        for _ in range(20):
            assert get(server, "/static/a.css").body == CSS
        assert reader.is_alive(), "the slow transfer ended before the other requests"
    finally:
        reader.join(90)
    digest, got, length = result["slow"]
    assert (got, digest) == (length, want)


def test_a_file_that_shrinks_while_sent_cuts_the_connection(server, tree):
    path = tree / "site" / "shrinks.bin"
    size = 32 << 20
    with open(path, "wb") as f:
        f.truncate(size)
    try:
        with connect(server.addr, timeout=10) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
            sock.sendall(b"GET /static/shrinks.bin HTTP/1.1\r\nHost: x\r\n\r\n")
            reader = Reader(sock)
            head = reader.read_until(b"\r\n\r\n")
            assert f"Content-Length: {size}".encode() in head
            got = len(reader.buf) + len(sock.recv(65536))
            os.truncate(path, 1 << 20)
            rest, closed = read_until_closed(sock, 20)
            got += len(rest)
        assert closed, "the connection was kept after a short body"
        assert got < size, "more bytes than the file has now"
    finally:
        path.unlink()


def test_a_static_hit_is_answered_while_the_app_holds_the_gil(server, tmp_path):
    marker = tmp_path / "spinning"
    with connect(server.addr, timeout=15) as spin, connect(server.addr, timeout=15) as other:
        spin.sendall(f"GET /spin?{marker} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        wait_until(marker.exists, 10, what="the app to start spinning")
        # an app request now waits for the GIL; a static hit does not need it
        other.sendall(b"GET /app HTTP/1.1\r\nHost: x\r\n\r\n")
        resp = get(server, "/static/a.css")
        assert resp.body == CSS
        spin.setblocking(False)
        other.setblocking(False)
        for sock in (spin, other):
            with pytest.raises(BlockingIOError):
                sock.recv(1)  # still spinning: neither app request has been answered
        spin.setblocking(True)
        other.setblocking(True)
        assert Reader(spin).response().body.startswith(b"spun ")
        assert Reader(other).response().body == b"app: GET /app"


def test_static_hits_are_in_the_access_log_and_count_for_max_requests(tree, tmp_path):
    log = tmp_path / "access.log"
    argv = [
        *WIZGY,
        "--bind",
        "127.0.0.1:0",
        "--static",
        f"/static={tree / 'site'}",
        "--access-log",
        str(log),
        "--max-requests",
        "5",
        "--chdir",
        str(Path(__file__).parent / "apps"),
        APP,
    ]
    srv = Server(argv, tree)
    try:
        srv.wait_ready()
        first = worker_of(srv)
        for _ in range(5):
            assert get(srv, "/static/a.css").body == CSS
        srv.wait_for(rf"worker {first} recycled: [^\n]*max-requests", 10)
        text = wait_until(
            lambda: log.read_text() if log.exists() and log.read_text().count("\n") >= 5 else None,
            10,
        )
        assert f'"GET /static/a.css HTTP/1.1" 200 {len(CSS)}' in text, text
    finally:
        srv.stop()


def test_the_routing_table_is_printed_at_start(server, tree):
    log = server.log()
    assert f"route /static/deep -> static files in {tree / 'deep'}" in log, log
    assert f"route /static -> static files in {tree / 'site'}" in log, log
    assert f"route / -> static files in {tree / 'html'}" in log, log
    assert log.index("route /static/deep") < log.index("route /static ->")


def test_open_files_stay_bounded_by_connections(server, big):
    pid = worker_of(server)
    fd_dir = Path(f"/proc/{pid}/fd")
    before = len(os.listdir(fd_dir))
    socks = []
    try:
        for _ in range(16):
            sock = connect(server.addr, timeout=10)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.sendall(b"GET /static/big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
            socks.append(sock)
        wait_until(lambda: len(os.listdir(fd_dir)) >= before + 32, 10, what="transfers to start")
        during = len(os.listdir(fd_dir))
        assert during <= before + 2 * len(socks), (
            f"{during - before} descriptors for {len(socks)} transfers"
        )
    finally:
        for sock in socks:
            sock.close()
    wait_until(lambda: len(os.listdir(fd_dir)) <= before, 10, what="descriptors to be let go")


# --- bad values --------------------------------------------------------------------------


def test_bad_static_values_are_one_error_line_and_exit_2(tmp_path):
    afile = tmp_path / "file.txt"
    afile.write_text("x")
    for args, says in (
        (["--static", "/x"], "PREFIX=DIR"),
        (["--static", "/x="], "PREFIX=DIR"),
        (["--static", f"/x={tmp_path / 'missing'}"], "No such file"),
        (["--static", f"/x={afile}"], "not a directory"),
        (["--static", f"x={tmp_path}"], "must start with '/'"),
        (["--static", f"/x/../y={tmp_path}"], "plain URL path"),
        (["--static", f"/x={tmp_path}", "--static", f"/x/={tmp_path}"], "given twice"),
        (["--static-max-age", "soon"], "static-max-age"),
    ):
        done = run_wizgy(*args, "static_app:app", timeout=20)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2, (args, done.stderr)
        assert len(lines) == 1 and lines[0].startswith("wizgy: error: "), (args, done.stderr)
        assert says in lines[0], (args, lines[0])


def test_the_seeds_layout_serves_pages_from_html_and_the_rest_from_the_app(tmp_path):
    # The seeds' server: a document root `html/` whose `/` is index.html, Python for the rest.
    html = tmp_path / "html"
    (html / "img").mkdir(parents=True)
    (html / "index.html").write_bytes(b"<h1>home</h1>")
    (html / "about.html").write_bytes(b"<h1>about</h1>")
    (html / "img" / "x.png").write_bytes(b"\x89PNG fake")
    argv = [*WIZGY, "--bind", "127.0.0.1:0", "--static", "/=./html"]
    srv = Server([*argv, "--chdir", str(Path(__file__).parent / "apps"), APP], tmp_path)
    try:
        srv.wait_ready()
        home = get(srv, "/")
        assert (home.status, home.body) == (200, b"<h1>home</h1>")
        assert home.header("Content-Type") == "text/html; charset=utf-8"
        assert get(srv, "/about.html").body == b"<h1>about</h1>"
        png = get(srv, "/img/x.png")
        assert (png.body, png.header("Content-Type")) == (b"\x89PNG fake", "image/png")
        # a directory without index.html is no page: the app answers, no listing
        assert app_answered(get(srv, "/img/"), "GET", "/img/")
        assert app_answered(get(srv, "/ctime.py"), "GET", "/ctime.py")
        assert app_answered(request(srv.addr, "POST", "/", body=b"x"), "POST", "/")
    finally:
        srv.stop()


def test_serve_from_python_takes_the_same_static_options(tree):
    code = (
        "import wizgy, static_app; wizgy.serve(static_app.app, bind='127.0.0.1:0', "
        f"static=['/s={tree / 'site'}', '/d={tree / 'deep'}'], static_max_age=60)"
    )
    srv = Server([sys.executable, "-c", code], Path(__file__).parent / "apps")
    try:
        srv.wait_ready()
        css = get(srv, "/s/a.css")
        assert (css.body, css.header("Cache-Control")) == (CSS, "public, max-age=60")
        assert get(srv, "/d/x.txt").body == b"from deep"
        assert app_answered(get(srv, "/elsewhere"), "GET", "/elsewhere")
    finally:
        srv.stop()
