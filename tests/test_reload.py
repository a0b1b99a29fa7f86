"""--reload: edited code is served, a syntax error is logged while the old code keeps serving,
and fixing the file serves the fix.
"""

from __future__ import annotations

import time

import pytest
from conftest import APPS
from helpers import request
from proc_util import tracked, wait_until

TEMPLATE = (APPS / "proc_marker_tmpl.py").read_text()


@pytest.fixture
def wserve(serve):
    yield from tracked(serve)


def with_marker(marker: str) -> str:
    text = TEMPLATE.replace('MARKER = "marker-one"', f"MARKER = {marker!r}")
    assert text != TEMPLATE
    return text


def marker(server) -> str:
    resp = request(server.addr, "GET", "/", timeout=5)
    assert resp.status == 200, (resp.status, resp.body[:300])
    return resp.body.decode().split()[0]


def wait_marker(server, expected: str, timeout: float = 5.0) -> float:
    started = time.monotonic()
    seen = []

    def check():
        seen.append(marker(server))
        return seen[-1] == expected

    try:
        wait_until(check, timeout, interval=0.1)
    except AssertionError:
        raise AssertionError(
            f"{expected!r} not served within {timeout}s (last {seen[-3:]}); log:\n{server.log()}"
        ) from None
    return time.monotonic() - started


def test_reload_serves_edits_survives_a_syntax_error_and_serves_the_fix(wserve, tmp_path):
    app_file = tmp_path / "reloadapp.py"
    app_file.write_text(TEMPLATE)
    server = wserve("reloadapp:app", "--threads", "2", "--reload", "--chdir", str(tmp_path))
    assert marker(server) == "marker-one"

    app_file.write_text(with_marker("marker-two-edited"))
    took = wait_marker(server, "marker-two-edited")
    print(f"--reload: edit served after {took:.2f}s")

    broken_at = len(server.log())
    app_file.write_text(with_marker("marker-three-broken") + "\ndef broken(:\n")
    server.wait_for(r"SyntaxError", 5)
    assert "SyntaxError" in server.log()[broken_at:]
    # the server did not exit and the last good code keeps answering
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        assert server.proc.poll() is None, server.log()
        assert marker(server) == "marker-two-edited"
        time.sleep(0.2)

    app_file.write_text(with_marker("marker-four-fixed-at-last"))
    took = wait_marker(server, "marker-four-fixed-at-last")
    print(f"--reload: fix served after {took:.2f}s")
    assert server.proc.poll() is None
