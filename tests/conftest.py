"""Fixtures that start the real ``wizgy`` command on port 0 and talk to it over sockets.

``serve("echo:app", "--threads", "4")`` starts ``python -m wizgy --bind 127.0.0.1:0 ...`` with
``tests/apps`` as the working directory, waits for its ``listening on`` line (no sleeps, no
guessed ports) and stops it by PID when the test ends.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

import pytest

APPS = Path(__file__).parent / "apps"
WIZGY = [sys.executable, "-m", "wizgy"]
LISTENING = re.compile(r"listening on (?:https?://(?:\[([^\]\s]+)\]|([^:\s]+)):(\d+)|unix:(\S+))")


class Server:
    """A running ``wizgy`` process and what it has logged so far."""

    def __init__(self, argv: list[str], cwd: Path, env: Optional[dict] = None, **popen) -> None:
        self.argv = argv
        full_env = dict(os.environ)
        full_env.pop("WEB_CONCURRENCY", None)
        if env:
            full_env.update(env)
        self.proc = subprocess.Popen(
            argv,
            cwd=str(cwd),
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            **popen,
        )
        self._stderr: list[str] = []
        self._stdout: list[str] = []
        self._cond = threading.Condition()
        self._pumps_done = 0
        for stream, sink in ((self.proc.stderr, self._stderr), (self.proc.stdout, self._stdout)):
            threading.Thread(target=self._pump, args=(stream, sink), daemon=True).start()
        self.host = ""
        self.port = 0
        self.unix_path: Optional[str] = None
        self.scheme = "http"

    def _pump(self, stream, sink: list[str]) -> None:
        for raw in iter(stream.readline, b""):
            with self._cond:
                sink.append(raw.decode("utf-8", "replace"))
                self._cond.notify_all()
        with self._cond:
            self._pumps_done += 1
            self._cond.notify_all()

    @property
    def addr(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    def log(self) -> str:
        """Everything written to stderr (the default error log) so far."""
        with self._cond:
            return "".join(self._stderr)

    def stdout(self) -> str:
        with self._cond:
            return "".join(self._stdout)

    def wait_for(self, pattern: str, timeout: float = 10.0, stream: str = "stderr") -> re.Match:
        """Wait until ``pattern`` (a regex) appears in stderr or stdout; fail after ``timeout``."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                text = "".join(self._stderr if stream == "stderr" else self._stdout)
                match = regex.search(text)
                if match:
                    return match
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"{pattern!r} not seen in {stream} within {timeout}s; "
                        f"stderr so far:\n{''.join(self._stderr)}"
                    )
                if self.proc.poll() is not None and self._pumps_done == 2:
                    raise AssertionError(
                        f"wizgy exited with {self.proc.returncode} before {pattern!r}; "
                        f"stderr:\n{''.join(self._stderr)}"
                    )
                self._cond.wait(min(remaining, 0.2))

    def wait_ready(self, timeout: float = 15.0) -> None:
        match = self.wait_for(LISTENING.pattern, timeout)
        if match.group(4):
            self.unix_path = match.group(4)
        else:
            self.host = match.group(1) or match.group(2)
            self.port = int(match.group(3))
            self.scheme = "https" if "listening on https://" in match.group(0) else "http"

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        """Signal the server by PID and wait for it; SIGKILL if it does not exit in time."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


@contextmanager
def running(app: str, *options: str, cwd: Path = APPS) -> Iterator[Server]:
    """A server on 127.0.0.1:0 for the duration of a ``with`` block (module-scoped fixtures)."""
    server = Server([*WIZGY, "--bind", "127.0.0.1:0", *options, app], cwd)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def run_wizgy(*args: str, cwd: Path = APPS, timeout: float = 30.0, env=None):
    """Run ``wizgy ARGS`` to completion (for commands expected to exit): a CompletedProcess."""
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    return subprocess.run(
        [*WIZGY, *args],
        cwd=str(cwd),
        env=full_env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def serve() -> Iterator:
    """Factory fixture: ``serve(app, *options, cwd=APPS, env=None, bind="127.0.0.1:0")``."""
    started: list[Server] = []

    def start(
        app: str,
        *options: str,
        cwd: Path = APPS,
        env: Optional[dict] = None,
        bind: Optional[str] = "127.0.0.1:0",
        wait: bool = True,
    ) -> Server:
        argv = [*WIZGY]
        if bind is not None:
            argv += ["--bind", bind]
        argv += [*options, app] if app else [*options]  # "": no APP (mounts only)
        server = Server(argv, cwd, env)
        started.append(server)
        if wait:
            server.wait_ready()
        return server

    yield start
    for server in started:
        server.stop()
