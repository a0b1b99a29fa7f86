"""--access-log-format: gunicorn's atoms, each checked against a known request over HTTP/1.1
and HTTP/2, and `json`, whose lines must parse whatever bytes the client sent."""

from __future__ import annotations

import base64
import json
import random
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
from conftest import run_wizgy
from helpers import Reader, connect
from proc_util import parent_of, wait_until

# Every atom gunicorn documents, each labelled so a line can be split back into them.
ATOMS = [
    "h", "l", "u", "t", "r", "s", "b", "B", "f", "a", "T", "M", "D", "L", "p", "m", "U", "q", "H",
]  # fmt: skip
EXTRA = {
    "i": "%({X-Custom}i)s",
    "i_missing": "%({X-Absent}i)s",
    "o": "%({Content-Type}o)s",
    "o2": "%({x-resp}o)s",
    "e_remote": "%({REMOTE_ADDR}e)s",
    "e_path": "%({PATH_INFO}e)s",
    "e_proto": "%({SERVER_PROTOCOL}e)s",
    "e_header": "%({HTTP_X_CUSTOM}e)s",
    "e_query": "%({QUERY_STRING}e)s",
    "e_method": "%({REQUEST_METHOD}e)s",
}
FORMAT = "\t".join([f"{a}=%({a})s" for a in ATOMS] + [f"{k}={v}" for k, v in EXTRA.items()])
SLEEP = 0.05


def fields(line: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in line.rstrip("\n").split("\t"))


def read_lines(path: Path, count: int, timeout: float = 10.0) -> list[str]:
    def enough():
        if not path.exists():
            return None
        # split on newlines only: str.splitlines() would split on U+2028 too
        lines = [line for line in path.read_bytes().decode("utf-8").split("\n") if line]
        return lines if len(lines) >= count else None

    return wait_until(enough, timeout, what=f"{count} access-log lines in {path}")


def check_atoms(got: dict[str, str], server, protocol: str, body_len: int) -> None:
    assert got["h"] == "127.0.0.1"
    assert got["l"] == "-"
    assert got["u"] == "alice"
    assert re.fullmatch(r"\[\d{2}/\w{3}/\d{4}:\d{2}:\d{2}:\d{2} \+0000\]", got["t"]), got["t"]
    assert got["r"] == f"GET /p%20q?sleep={SLEEP}&x=1 {protocol}"
    assert got["s"] == "200"
    assert got["b"] == got["B"] == str(body_len)
    assert got["f"] == "http://ref.example/"
    assert got["a"] == "ua/1.0"
    micros = int(got["D"])
    assert SLEEP * 1e6 <= micros < 5e6, micros
    assert got["M"] == str(micros // 1000)
    assert got["T"] == str(micros // 1_000_000)
    assert got["L"] == f"{micros // 1_000_000}.{micros % 1_000_000:06d}"
    pid = int(got["p"].strip("<>"))
    assert got["p"] == f"<{pid}>"
    assert parent_of(pid) == server.proc.pid, "the pid of the worker that served it"
    assert got["m"] == "GET"
    assert got["U"] == "/p%20q"
    assert got["q"] == f"sleep={SLEEP}&x=1"
    assert got["H"] == protocol
    assert got["i"] == "custom-value"
    assert got["i_missing"] == "-"
    assert got["o"] == "text/x-ops"
    assert got["o2"] == "r1"
    assert got["e_remote"] == "127.0.0.1"
    assert got["e_path"] == "/p q"
    assert got["e_proto"] == protocol
    assert got["e_header"] == "custom-value"
    assert got["e_query"] == f"sleep={SLEEP}&x=1"
    assert got["e_method"] == "GET"


KNOWN_HEADERS = {
    "Authorization": "Basic " + base64.b64encode(b"alice:secret").decode(),
    "Referer": "http://ref.example/",
    "User-Agent": "ua/1.0",
    "X-Custom": "custom-value",
}


def test_every_gunicorn_atom_over_http1(serve, tmp_path):
    log = tmp_path / "access.log"
    server = serve("ops_apps:app", "--access-log", str(log), "--access-log-format", FORMAT)
    head = f"GET /p%20q?sleep={SLEEP}&x=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in KNOWN_HEADERS.items())
    with connect(server.addr) as sock:
        sock.sendall(head.encode() + b"\r\n")
        resp = Reader(sock).response()
    assert resp.status == 200
    (line,) = read_lines(log, 1)
    check_atoms(fields(line), server, "HTTP/1.1", len(resp.body))


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is needed for h2c")
def test_every_gunicorn_atom_over_http2(serve, tmp_path):
    log = tmp_path / "access.log"
    server = serve("ops_apps:app", "--access-log", str(log), "--access-log-format", FORMAT)
    args = ["curl", "-sS", "--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_version}"]
    for name, value in KNOWN_HEADERS.items():
        args += ["-H", f"{name}: {value}"]
    url = f"{server.url}/p%20q?sleep={SLEEP}&x=1"
    out = subprocess.run([*args, url], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and out.stdout == "2", (out.stdout, out.stderr)
    (line,) = read_lines(log, 1)
    check_atoms(fields(line), server, "HTTP/2", len(b"ops!"))


def test_the_default_format_is_gunicorns(serve, tmp_path):
    log = tmp_path / "access.log"
    server = serve("ops_apps:app", "--access-log", str(log))
    explicit = tmp_path / "explicit.log"
    gunicorn = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'
    other = serve("ops_apps:app", "--access-log", str(explicit), "--access-log-format", gunicorn)
    for target in (server, other):
        with connect(target.addr) as sock:
            sock.sendall(
                b"GET /d HTTP/1.1\r\nHost: x\r\nUser-Agent: u\r\nConnection: close\r\n\r\n"
            )
            Reader(sock).response()
    strip_time = lambda line: re.sub(r"\[[^\]]*\]", "[T]", line)  # noqa: E731
    assert strip_time(read_lines(log, 1)[0]) == strip_time(read_lines(explicit, 1)[0])
    assert strip_time(read_lines(log, 1)[0]) == '127.0.0.1 - - [T] "GET /d HTTP/1.1" 200 4 "-" "u"'


BAD_FORMATS = ["%(zz)s", "%(h", "%(h)x", "100%", "%({wsgi.input}e)s", "%({x}q)s"]


@pytest.mark.parametrize("bad", BAD_FORMATS)
def test_a_bad_format_is_one_error_line_at_start(bad):
    result = run_wizgy("--access-log-format", bad, "ops_apps:app", timeout=20)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith("wizgy: error: "), result.stderr
    assert "--access-log-format" in lines[0]


def test_an_environ_key_the_server_does_not_know_says_why():
    result = run_wizgy("--access-log-format", "%({wsgi.input}e)s", "ops_apps:app", timeout=20)
    assert "not available" in result.stderr, result.stderr


# --- json ----------------------------------------------------------------------------------

# Bytes a client may send in a field value (quotes, backslashes, JSON's own escapes spelled
# out, bytes that are not UTF-8, a lone surrogate's UTF-8 form, U+2028, tabs, braces), and a
# few no field may hold (the parser refuses those requests, and they are not logged).
HOSTILE = [b'"', b"\\", b"\\u0000", b"\\x", b"\xff", b"\xc3", b"\xc3\xa9", b"\xe2\x80\xa8",
           b"\xed\xa0\x80", b"\t", b"}", b"{", b"'", b"a", b" ", b"%", b"\xf0\x9f\x98\x80",
           b"\xf8\x88\x80\x80\x80", b"\x80"]  # fmt: skip
ILLEGAL = [b"\x00", b"\x01", b"\x1b", b"\x7f", b"\r", b"\n"]
PATH_BYTES = [b'"', b"\\", b"{", b"}", b"'", b"%", b"a", b"%22", b"\xff", b"\xc3\xa9"]


def hostile(rng: random.Random, n: int, alphabet=HOSTILE) -> bytes:
    value = b"".join(rng.choice(alphabet) for _ in range(n))
    if alphabet is HOSTILE and rng.random() < 0.1:
        value += rng.choice(ILLEGAL) + b"z"
    return value


def test_json_lines_always_parse_whatever_bytes_the_client_sent(serve, tmp_path):
    log = tmp_path / "access.log"
    server = serve("ops_apps:app", "--access-log", str(log), "--access-log-format", "json")
    rng = random.Random(21)
    answered = []
    for i in range(150):
        agent, referer, rid = hostile(rng, 12), hostile(rng, 6), hostile(rng, 4)
        path = b"/f" + hostile(rng, 5, PATH_BYTES)
        head = (
            b"GET " + path + b"?k=" + str(i).encode() + b" HTTP/1.1\r\nHost: x\r\n"
            b"Connection: close\r\nUser-Agent: " + agent + b"\r\nReferer: " + referer + b"\r\n"
            b"X-Request-ID: " + rid + b"\r\n\r\n"
        )
        with connect(server.addr) as sock:
            sock.sendall(head)
            try:
                status = Reader(sock).response().status
            except Exception:
                status = None
        if status == 200:
            answered.append((i, path, agent, referer, rid))
    assert len(answered) > 20, "enough hostile requests were valid HTTP to be served"
    lines = read_lines(log, len(answered))
    assert len(lines) == len(answered), "one line per answered request, none dropped"
    records = {}
    for line in lines:
        assert line.isascii(), line
        record = json.loads(line)  # every line parses
        records[record["query"]] = record
    for i, path, agent, referer, rid in answered:
        record = records[f"k={i}"]
        decode = lambda raw: raw.strip(b" \t").decode("utf-8", "backslashreplace")  # noqa: E731
        assert record["user_agent"] == decode(agent), (agent, record)
        assert record["referer"] == decode(referer), (referer, record)
        assert record["request_id"] == decode(rid), (rid, record)
        assert record["path"] == path.decode("utf-8", "backslashreplace")
        assert record["method"] == "GET" and record["status"] == 200
        assert record["protocol"] == "HTTP/1.1" and record["client"] == "127.0.0.1"
        assert record["bytes"] == 4 and record["duration"] >= 0
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", record["time"])


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is needed for h2c")
def test_json_lines_over_http2_with_quotes_backslashes_and_utf8(serve, tmp_path):
    log = tmp_path / "access.log"
    server = serve("ops_apps:app", "--access-log", str(log), "--access-log-format", "json")
    agent = 'say "hi" \\ \u00e9\u2028 }{'
    out = subprocess.run(
        ["curl", "-sS", "--http2-prior-knowledge", "-o", "/dev/null", "-H", f"User-Agent: {agent}",
         "-H", "X-Request-ID: req-42", f"{server.url}/h2?a=%22b"],
        capture_output=True, timeout=30,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    (line,) = read_lines(log, 1)
    record = json.loads(line)
    assert record["user_agent"] == agent
    assert record["request_id"] == "req-42"
    assert record["protocol"] == "HTTP/2"
    assert (record["path"], record["query"]) == ("/h2", "a=%22b")
    assert record["referer"] is None


def test_the_last_lines_are_written_when_the_worker_stops(serve, tmp_path):
    log = tmp_path / "access.log"
    server = serve("ops_apps:app", "--access-log", str(log), "--access-log-format", "json")
    for i in range(50):
        with connect(server.addr) as sock:
            sock.sendall(f"GET /n?i={i} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            Reader(sock).response()
    assert server.stop(signal.SIGTERM) == 0
    lines = [line for line in log.read_text().split("\n") if line]
    assert sorted(json.loads(line)["query"] for line in lines) == sorted(
        f"i={i}" for i in range(50)
    )
