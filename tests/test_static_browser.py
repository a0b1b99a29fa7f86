"""A real browser's conditional revalidation of static files: headless Chromium (Debian's
package, installed by scripts/system-deps.sh) loads a page with a stylesheet and two images
twice with one profile; wizgy's access log must show the second load's requests answered 304.

``--static-max-age 0`` makes every cached file stale at once, so the browser revalidates
(If-None-Match / If-Modified-Since) instead of using its copy unasked. Chromium is driven with
``--dump-dom`` (it loads the page and its subresources, prints the DOM, exits), bounded by a
timeout and stopped by PID if it outlives it.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
from conftest import WIZGY, Server
from proc_util import wait_until

CHROMIUM = shutil.which("chromium")
APPS = Path(__file__).parent / "apps"
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///ywAAAAAAQABAAACAUwAOw==")
PAGE = (
    b'<!doctype html><html><head><link rel="stylesheet" href="/static/site.css"></head>'
    b'<body><h1 id="title">static page</h1><img src="/static/img/logo.png">'
    b'<img src="/static/img/dot.gif"></body></html>'
)
SUBRESOURCES = ("/static/site.css", "/static/img/logo.png", "/static/img/dot.gif")


def load(url: str, profile: Path, timeout: float = 60.0) -> str:
    """One headless load of ``url`` with ``profile``; the DOM Chromium printed."""
    argv = [CHROMIUM, "--headless", "--disable-gpu", "--no-first-run", "--disable-extensions"]
    if os.geteuid() == 0:
        argv.append("--no-sandbox")  # Chromium refuses to run as root with its sandbox
    argv += [f"--user-data-dir={profile}", "--dump-dom", url]
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        # its own session: the browser and the helpers it started, by the group of its PID
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        raise
    assert proc.returncode == 0, f"chromium exited {proc.returncode}"
    return out.decode("utf-8", "replace")


def statuses(log: Path) -> list[tuple[str, int]]:
    """(path, status) of each GET in the access log, in order."""
    lines = log.read_text().splitlines() if log.exists() else []
    found = []
    for line in lines:
        match = re.search(r'"GET (\S+) HTTP/1\.1" (\d{3}) ', line)
        if match:
            found.append((match.group(1), int(match.group(2))))
    return found


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (make sysdeps)")
def test_a_browser_revalidates_the_page_subresources_with_304s(tmp_path):
    site = tmp_path / "site"
    (site / "img").mkdir(parents=True)
    (site / "index.html").write_bytes(PAGE)
    (site / "site.css").write_bytes(b"h1 { color: #336699 }\n")
    (site / "img" / "logo.png").write_bytes(PNG)
    (site / "img" / "dot.gif").write_bytes(GIF)
    log = tmp_path / "access.log"
    argv = [*WIZGY, "--bind", "127.0.0.1:0", "--static", f"/static={site}"]
    argv += ["--static-max-age", "0", "--access-log", str(log), "--chdir", str(APPS)]
    server = Server([*argv, "static_app:app"], tmp_path)
    try:
        server.wait_ready()
        url = f"{server.url}/static/"
        profile = tmp_path / "profile"
        for round_ in (1, 2):
            dom = load(url, profile)
            assert 'id="title">static page<' in dom, dom[:500]
            # each load's three subresources are in the log before the next load starts
            wait_until(
                lambda want=3 * round_: sum(p in SUBRESOURCES for p, _ in statuses(log)) >= want,
                10,
                what=f"load {round_}'s subresources in the access log",
            )
        seen = [(p, s) for p, s in statuses(log) if p in SUBRESOURCES]
        first, second = seen[:3], seen[3:6]
        print(f"first load: {first}\nsecond load: {second}")
        assert sorted(first) == sorted((p, 200) for p in SUBRESOURCES), first
        assert sorted(second) == sorted((p, 304) for p in SUBRESOURCES), second
    finally:
        server.stop()
