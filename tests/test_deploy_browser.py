"""A real browser through the documented nginx (examples/deploy/nginx.conf) to a Django site on
wizgy: headless Chromium (Debian's package) loads a page with a stylesheet and an image, posts a
form under Django's CSRF protection, follows the redirect and sends back the cookie it was
given; the test reads the rendered DOM at each step.

Chromium is driven over its DevTools protocol on a pipe (`--remote-debugging-pipe`: JSON
messages ending in NUL on fds 3 and 4), so nothing beyond Debian's browser and the standard
library is needed. Each wait is bounded; the browser runs in its own session and is stopped by
its PID (its helpers by that group).
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import struct
import subprocess
import tempfile
import time
import zlib
from pathlib import Path
from typing import Optional

import pytest
from proc_util import tracked
from test_nginx import NGINX, Nginx, documented_http_block, free_port

CHROMIUM = shutil.which("chromium")


def png_2x2() -> bytes:
    """A 2x2 RGB PNG, so the image's natural width shows the browser decoded it."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(b"\0" + b"\x33\x66\x99" * 2 for _ in range(2))
    header = struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + (chunk(b"IEND", b""))
    )


pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (make sysdeps)"),
    pytest.mark.skipif(not os.path.exists(NGINX), reason="nginx not installed (make sysdeps)"),
]


class Browser:
    """Headless Chromium with one page, driven over the DevTools protocol on a pipe."""

    def __init__(self, profile: Path) -> None:
        commands_r, self._commands = os.pipe()
        self._events, events_w = os.pipe()

        def to_fds_3_and_4() -> None:
            # through high numbers first, so neither dup2 clobbers the other's source
            high_r, high_w = os.dup(commands_r) + 100, os.dup(events_w) + 100
            os.dup2(commands_r, high_r)
            os.dup2(events_w, high_w)
            os.dup2(high_r, 3)
            os.dup2(high_w, 4)

        argv = [CHROMIUM, "--headless", "--disable-gpu", "--no-first-run", "--disable-extensions"]
        if os.geteuid() == 0:
            argv.append("--no-sandbox")  # Chromium refuses to run as root with its sandbox
        argv += [
            f"--user-data-dir={profile}",
            "--remote-debugging-pipe",
            "--ignore-certificate-errors",  # nginx's certificate is self-signed
            "about:blank",
        ]
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=to_fds_3_and_4,
            close_fds=False,
            start_new_session=True,
        )
        os.close(commands_r)
        os.close(events_w)
        self._next_id = 0
        self._buffer = b""
        self._pending: list[dict] = []
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        attached = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})
        self.session = attached["sessionId"]
        self.call("Page.enable", session=True)

    def _read_message(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError("chromium did not answer in time")
            ready, _, _ = select.select([self._events], [], [], remaining)
            if ready:
                piece = os.read(self._events, 1 << 20)
                if not piece:
                    raise AssertionError(f"chromium closed its pipe (exit {self.proc.poll()})")
                self._buffer += piece
        message, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(message)

    def call(self, method: str, params: Optional[dict] = None, session: bool = False,
             timeout: float = 30.0) -> dict:  # fmt: skip
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = self.session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next_id:
                assert "error" not in reply, (method, reply["error"])
                return reply["result"]
            self._pending.append(reply)

    def wait_event(self, method: str, timeout: float = 30.0) -> dict:
        deadline = time.monotonic() + timeout
        for index, event in enumerate(self._pending):
            if event.get("method") == method:
                return self._pending.pop(index)
        while True:
            event = self._read_message(deadline)
            if event.get("method") == method:
                return event
            self._pending.append(event)

    def evaluate(self, expression: str):
        result = self.call(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
            session=True,
        )
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    def load(self, action) -> None:
        """Run ``action`` (a navigation) and wait for the new page's load event."""
        self._pending = [e for e in self._pending if e.get("method") != "Page.loadEventFired"]
        action()
        self.wait_event("Page.loadEventFired")

    def close(self) -> None:
        for fd in (self._commands, self._events):
            try:
                os.close(fd)
            except OSError:
                pass
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


@pytest.fixture
def wserve(serve):
    yield from tracked(serve)


def test_chromium_through_nginx_uses_a_django_site_with_css_an_image_a_csrf_form_and_a_cookie(
    wserve, tmp_path
):
    pytest.importorskip("django")
    site = Path(tempfile.mkdtemp(prefix="wizgy-browser-"))  # nginx's workers must reach it
    site.chmod(0o755)
    browser = None
    proxy = None
    try:
        static = site / "static"
        static.mkdir()
        (static / "site.css").write_text("h1, #greeting { color: rgb(51, 102, 153) }\n")
        (static / "logo.png").write_bytes(png_2x2())
        sock = site / "wizgy.sock"
        wserve(
            "browser_site:application", "--threads", "4", "--forwarded-for",
            "--static", f"/static={static}", bind=f"unix:{sock}",
        )  # fmt: skip
        http_port, https_port = free_port(), free_port()
        block = documented_http_block(f"unix:{sock}", http_port, https_port, site)
        proxy = Nginx(site, block, [https_port, http_port])
        origin = f"https://127.0.0.1:{https_port}"

        browser = Browser(tmp_path / "profile")
        browser.load(lambda: browser.call("Page.navigate", {"url": f"{origin}/"}, session=True))
        page = browser.evaluate(
            """({
                title: document.getElementById('title').textContent,
                color: getComputedStyle(document.getElementById('title')).color,
                image: [document.getElementById('logo').complete,
                        document.getElementById('logo').naturalWidth],
                token: document.querySelector('input[name=csrfmiddlewaretoken]').value,
                secure: document.getElementById('secure').textContent,
                cookie: document.cookie,
            })"""
        )
        print(f"home page: {page}")
        assert page["title"] == "Welcome"
        assert page["color"] == "rgb(51, 102, 153)", "the stylesheet did not apply"
        assert page["image"] == [True, 2], "the image did not load"
        assert len(page["token"]) == 64
        assert page["secure"] == "True"  # wsgi.url_scheme is https behind nginx
        assert "csrftoken=" in page["cookie"]

        # the control: a POST without the token is refused by Django's CSRF middleware
        refused = browser.evaluate(
            "fetch('/greet', {method: 'POST', body: new URLSearchParams({name: 'Eve'})})"
            ".then(r => r.status)"
        )
        assert refused == 403

        browser.load(
            lambda: browser.evaluate(
                "document.getElementById('name').value = 'Ada'; document.forms[0].submit(); 1"
            )
        )
        after = browser.evaluate(
            """({
                url: location.href,
                greeting: document.getElementById('greeting').textContent,
                color: getComputedStyle(document.getElementById('greeting')).color,
                client: document.getElementById('client').textContent,
                cookie: document.cookie,
            })"""
        )
        print(f"after the form: {after}")
        assert after["url"] == f"{origin}/thanks"  # the redirect was followed
        assert after["greeting"] == "Hello, Ada!"  # the cookie came back to the server
        assert "greeting=Ada" in after["cookie"]
        assert after["color"] == "rgb(51, 102, 153)"
        assert after["client"] == "127.0.0.1"  # nginx's $remote_addr, via X-Forwarded-For
    finally:
        if browser is not None:
            browser.close()
        if proxy is not None:
            proxy.stop()
        shutil.rmtree(site, ignore_errors=True)
