"""The request corpus (issue #3): every vector under tests/corpus, fed four ways.

``tests/corpus/invalid/NAME.http`` holds exact request bytes the server must refuse;
``NAME.expect`` is ``{"status": N, "rule": "..."}`` (plus ``"app_may_run": true`` for chunked-body
framing errors, which the contract lets the server find while the app reads ``wsgi.input``).
``tests/corpus/valid/NAME.http`` must be served; its ``.expect`` lists environ values, the body
the app reads, and optionally ``"absent"`` environ keys. ``tests/corpus/build_corpus.py`` writes
the files; ``test_corpus_files_match_build_corpus`` checks nothing drifted (or was line-ending
mangled by git).

Each vector is sent on a fresh connection in four feeding modes and never half-closed, so the
server must decide from the bytes alone:

- ``whole``: one ``sendall``;
- ``line``: one send per line (split after every ``\\n``);
- ``byte``: one send per byte with TCP_NODELAY and a ~0.5 ms pause, so each byte is its own
  segment. Vectors over 1 KiB (the 8 KiB limit vectors) go in 64-byte pieces instead, or byte
  mode alone would take seconds per vector; pauses also stop after BYTE_BUDGET seconds;
- ``random``: 2-8 pieces cut at points from ``random.Random(vector name)`` (reproducible).

Invalid: exactly the expected status, ``Connection: close``, the socket then closes with no
further bytes, and the app never ran (corpus_app logs ``CORPUS-APP-CALLED <PATH_INFO>``; each
invalid vector uses the path ``/inv-NAME`` where its rule allows a path, and a sentinel request
afterwards makes sure the log has caught up). Valid: 200, the expected environ values and body.
"""

from __future__ import annotations

import importlib.util
import json
import random
import re
import socket
import time
from pathlib import Path

import pytest
from conftest import APPS, WIZGY, Server
from helpers import Reader, Response, connect, request

CORPUS = Path(__file__).parent / "corpus"
MODES = ("whole", "line", "byte", "random")
READ_TIMEOUT = 5.0
PAUSE = 0.0005  # between pieces: each piece becomes its own TCP segment
BYTE_BUDGET = 3.0  # seconds of pauses per vector in byte mode before sending flat out
BIG_VECTOR = 1024  # byte mode sends vectors longer than this in BIG_PIECE-byte pieces
BIG_PIECE = 64
MARKER = re.compile(r"CORPUS-APP-CALLED (\S*)")
REFUSAL_STATUSES = {400, 413, 414, 417, 431, 501, 505}


def load(kind: str) -> dict[str, tuple[bytes, dict]]:
    vectors = {}
    for http in sorted((CORPUS / kind).glob("*.http")):
        expect = http.with_suffix(".expect")
        meta = json.loads(expect.read_text("ascii")) if expect.exists() else {}
        vectors[http.stem] = (http.read_bytes(), meta)
    return vectors


INVALID = load("invalid")
VALID = load("valid")
# (kind, name, mode) -> what the server answered, compared across modes at the end.
RESULTS: dict[tuple[str, str, str], tuple] = {}


def printable(text: str) -> str:
    """PATH_INFO as corpus_app logs it."""
    return "".join(c if 0x20 < ord(c) < 0x7F else f"\\x{ord(c):02x}" for c in text)


def pieces(name: str, data: bytes, mode: str) -> list[bytes]:
    if mode == "whole":
        return [data]
    if mode == "line":
        out, start = [], 0
        for index, byte in enumerate(data):
            if byte == 0x0A:
                out.append(data[start : index + 1])
                start = index + 1
        if start < len(data):
            out.append(data[start:])
        return out
    if mode == "byte":
        # Over 1 KiB (the 8 KiB limit vectors): 64-byte pieces, else byte mode takes seconds.
        size = BIG_PIECE if len(data) > BIG_VECTOR else 1
        return [data[i : i + size] for i in range(0, len(data), size)]
    assert mode == "random", mode
    rng = random.Random(name)
    count = min(rng.randint(2, 8), len(data))
    cuts = sorted(rng.sample(range(1, len(data)), count - 1))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:])]


def send(sock: socket.socket, parts: list[bytes]) -> None:
    """Send each piece separately; stop quietly if the server has already answered and closed."""
    deadline = time.monotonic() + BYTE_BUDGET
    for index, part in enumerate(parts):
        try:
            sock.sendall(part)
        except (BrokenPipeError, ConnectionResetError):
            return
        if index < len(parts) - 1 and time.monotonic() < deadline:
            time.sleep(PAUSE)


def comparable(kind: str, resp: Response) -> tuple:
    """What must be identical across feeding modes: status and body (the valid vectors' JSON
    without REMOTE_PORT, which differs per connection)."""
    if kind == "valid" and resp.status == 200:
        try:
            payload = resp.json()
        except ValueError:
            return (resp.status, resp.body)
        payload.get("environ", {}).pop("REMOTE_PORT", None)
        return (resp.status, json.dumps(payload, sort_keys=True))
    return (resp.status, resp.body)


def exchange(server: Server, kind: str, name: str, mode: str) -> tuple[Response, Reader]:
    """Feed one vector in one mode on a fresh connection; the response (1xx skipped for valid
    vectors) and the Reader (to check what follows). The result is recorded in RESULTS."""
    data = (INVALID if kind == "invalid" else VALID)[name][0]
    sock = connect(server.addr, READ_TIMEOUT)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        send(sock, pieces(name, data, mode))
        reader = Reader(sock)
        resp = reader.response()
        while kind == "valid" and 100 <= resp.status < 200:
            resp = reader.response()
    except Exception as exc:
        sock.close()
        RESULTS[(kind, name, mode)] = ("error", type(exc).__name__)
        raise
    RESULTS[(kind, name, mode)] = comparable(kind, resp)
    return resp, reader


def connection_tokens(resp: Response) -> set[str]:
    return {
        token.strip().lower()
        for value in resp.header_all("connection")
        for token in value.split(",")
        if token.strip()
    }


def app_calls(server: Server, since: int) -> list[str]:
    return MARKER.findall(server.log()[since:])


@pytest.fixture(scope="module")
def server():
    srv = Server(
        [
            *WIZGY,
            "--bind",
            "127.0.0.1:0",
            "--threads",
            "4",
            "--error-log",
            "-",
            "corpus_app:app",
        ],
        APPS,
    )
    try:
        srv.wait_ready()
    except BaseException:
        srv.stop()
        raise
    yield srv
    srv.stop()


MAY_RUN = {f"/inv-{name}" for name, (_, meta) in INVALID.items() if meta.get("app_may_run")}


def assert_app_not_called(server: Server, name: str, mode: str, since: int) -> None:
    """Serve a sentinel request, wait until its marker is logged, then no marker for this vector
    (nor any other non-sentinel marker, for vectors without a path) may have appeared."""
    sentinel = f"/corpus-sentinel-{name}-{mode}"
    resp = request(server.addr, "GET", sentinel, timeout=READ_TIMEOUT)
    assert resp.status == 200, ("the server stopped serving after the vector", resp.status)
    deadline = time.monotonic() + READ_TIMEOUT
    while sentinel not in app_calls(server, since):
        assert time.monotonic() < deadline, "sentinel marker never logged"
        time.sleep(0.005)
    calls = [c for c in app_calls(server, since) if c != sentinel and c not in MAY_RUN]
    assert not calls, f"the app was called for a refused request: {calls}"


@pytest.mark.parametrize(
    "name, mode", [pytest.param(n, m, id=f"{n}-{m}") for n in INVALID for m in MODES]
)
def test_invalid_vector_is_refused(server, name, mode):
    _, expect = INVALID[name]
    since = len(server.log())
    resp, reader = exchange(server, "invalid", name, mode)
    try:
        assert resp.status == expect["status"], (
            f"got {resp.status} {resp.reason} {resp.body[:200]!r}; rule: {expect['rule']}"
        )
        assert resp.version == "HTTP/1.1"
        assert "close" in connection_tokens(resp), resp.headers
        assert resp.header("content-type") == "text/plain; charset=utf-8", resp.headers
        assert resp.header("content-length") is not None, resp.headers
        assert reader.is_closed(READ_TIMEOUT), (
            f"expected close after the refusal, got further bytes {reader.buf[:200]!r}"
        )
    finally:
        reader.sock.close()
    if not expect.get("app_may_run"):
        assert_app_not_called(server, name, mode, since)


@pytest.mark.parametrize(
    "name, mode", [pytest.param(n, m, id=f"{n}-{m}") for n in VALID for m in MODES]
)
def test_valid_vector_is_served(server, name, mode):
    _, expect = VALID[name]
    since = len(server.log())
    resp, reader = exchange(server, "valid", name, mode)
    reader.sock.close()
    assert resp.status == 200, (resp.status, resp.reason, resp.body[:300], expect["rule"])
    payload = resp.json()
    environ = payload["environ"]
    for key, value in expect["environ"].items():
        assert environ.get(key, "<absent>") == value, (key, expect["rule"])
    for key in expect.get("absent", []):
        assert key not in environ, (key, environ.get(key), expect["rule"])
    assert payload["body"] == expect["body"], expect["rule"]
    # The app's marker (its PATH_INFO) is in the log: proves the not-called check can see it,
    # and keeps it from straggling into the next test's log window.
    wanted = expect["environ"].get("PATH_INFO")
    deadline = time.monotonic() + READ_TIMEOUT
    while True:
        calls = app_calls(server, since)
        if (printable(wanted) in calls) if wanted is not None else calls:
            break
        assert time.monotonic() < deadline, f"no CORPUS-APP-CALLED {wanted} in the log: {calls}"
        time.sleep(0.005)


def test_feeding_modes_give_identical_results(server):
    """Whole, line, byte and random feeding give the same (status, body) for every vector."""
    differing = {}
    for kind, vectors in (("invalid", INVALID), ("valid", VALID)):
        for name in vectors:
            for mode in MODES:
                if (kind, name, mode) not in RESULTS:  # this test run on its own
                    try:
                        _, reader = exchange(server, kind, name, mode)
                        reader.sock.close()
                    except Exception:
                        pass  # recorded as ("error", ...)
            results = {mode: RESULTS[(kind, name, mode)] for mode in MODES}
            if len(set(results.values())) > 1:
                differing[f"{kind}/{name}"] = {
                    mode: (r[0], r[1][:120] if isinstance(r[1], (bytes, str)) else r[1])
                    for mode, r in results.items()
                }
    assert not differing, json.dumps(differing, indent=1, default=repr)


def test_corpus_is_complete_and_well_formed():
    for kind in ("invalid", "valid"):
        folder = CORPUS / kind
        https = {p.stem for p in folder.glob("*.http")}
        expects = {p.stem for p in folder.glob("*.expect")}
        assert https == expects, (kind, sorted(https ^ expects))
        assert all(re.fullmatch(r"[a-z0-9][a-z0-9-]*", n) for n in https), kind
    assert len(INVALID) >= 80, len(INVALID)
    assert len(VALID) >= 60, len(VALID)
    assert not set(INVALID) & set(VALID)
    for name, (data, meta) in INVALID.items():
        assert meta["status"] in REFUSAL_STATUSES and meta["rule"].strip(), name
        assert set(meta) <= {"status", "rule", "app_may_run"}, name
        # A vector carrying an /inv- path carries its own (unique markers).
        assert set(re.findall(rb"/inv-[a-z0-9-]+", data)) <= {f"/inv-{name}".encode()}, name
    with_marker = sum(f"/inv-{name}".encode() in data for name, (data, _) in INVALID.items())
    assert with_marker >= len(INVALID) * 3 // 4, with_marker
    for name, (_data, meta) in VALID.items():
        assert isinstance(meta["environ"], dict) and isinstance(meta["body"], str), name
        assert meta["rule"].strip(), name
        assert set(meta) <= {"environ", "body", "rule", "absent"}, name


def test_corpus_files_match_build_corpus():
    """The committed files are exactly what build_corpus.py writes (catches hand edits and git
    line-ending conversion; .gitattributes should say ``tests/corpus/** -text``)."""
    spec = importlib.util.spec_from_file_location("build_corpus", CORPUS / "build_corpus.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for kind, built, loaded in (
        ("invalid", module.INVALID, INVALID),
        ("valid", module.VALID, VALID),
    ):
        assert set(built) == set(loaded), (kind, sorted(set(built) ^ set(loaded)))
        for name, (data, expect) in built.items():
            assert loaded[name][0] == data, f"{kind}/{name}.http differs from build_corpus.py"
            assert loaded[name][1] == expect, f"{kind}/{name}.expect differs from build_corpus.py"
