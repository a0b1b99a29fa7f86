"""Helpers for the process/operations tests: worker pids, bounded waits, a load generator.

Everything here is bounded in time and count; processes are only ever signalled by PID.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable, Iterator, Optional

from conftest import Server
from helpers import request

# --- waiting --------------------------------------------------------------------------------


def wait_until(
    predicate: Callable[[], object], timeout: float, interval: float = 0.05, what: str = ""
):
    """Poll ``predicate`` until it returns something truthy (returned); fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


def holds_for(predicate: Callable[[], object], duration: float, interval: float = 0.1) -> bool:
    """True if ``predicate`` stays truthy for the whole of ``duration`` seconds."""
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        if not predicate():
            return False
        time.sleep(interval)
    return bool(predicate())


# --- processes ------------------------------------------------------------------------------


def _state(pid: int) -> Optional[str]:
    """The one-letter /proc state of ``pid`` (R, S, Z, T, ...), or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name is in parentheses and may contain spaces
    return stat[stat.rindex(")") + 2 :].split()[0]


def alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    return _state(pid) not in (None, "Z", "X")


def parent_of(pid: int) -> Optional[int]:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat[stat.rindex(")") + 2 :].split()[1])


def children(pid: int) -> set[int]:
    """Live (non-zombie) direct children of ``pid``, over all of its threads."""
    found: set[int] = set()
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tasks:
        try:
            text = Path(f"/proc/{pid}/task/{tid}/children").read_text()
        except OSError:
            continue
        found.update(int(p) for p in text.split())
    return {p for p in found if alive(p)}


def workers(server: Server) -> set[int]:
    return children(server.proc.pid)


def booted(server: Server) -> set[int]:
    """Pids the log reports as ``worker <pid> booted``."""
    return {int(p) for p in re.findall(r"worker (\d+) booted", server.log())}


def wait_workers(server: Server, count: int, timeout: float = 10.0) -> set[int]:
    """Wait until the supervisor has exactly ``count`` live children, all logged as booted."""

    def check():
        kids = workers(server)
        if len(kids) == count and kids <= booted(server):
            return kids
        return None

    try:
        return wait_until(check, timeout, what=f"{count} booted workers")
    except AssertionError:
        raise AssertionError(
            f"expected {count} booted workers; children now {sorted(workers(server))}, "
            f"booted in log {sorted(booted(server))}; log:\n{server.log()}"
        ) from None


def wait_new_worker(server: Server, old: set[int], timeout: float = 5.0) -> int:
    """Wait for a live child that is not in ``old``; return its pid."""

    def check():
        fresh = workers(server) - old
        return min(fresh) if fresh else None

    try:
        return wait_until(check, timeout, what="a new worker pid")
    except AssertionError:
        raise AssertionError(
            f"no new worker within {timeout}s (old {sorted(old)}, now "
            f"{sorted(workers(server))}); log:\n{server.log()}"
        ) from None


def is_wizgy(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"wizgy" in cmdline


def kill_leftovers(pids) -> None:
    """SIGKILL (after SIGCONT) any of ``pids`` still alive and still a wizgy process."""
    for pid in pids:
        if alive(pid) and is_wizgy(pid):
            for sig in (signal.SIGCONT, signal.SIGKILL):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    break


class Tracked:
    """Wraps the ``serve`` factory: remembers every worker pid seen, cleans up at the end.

    At teardown each server is stopped (SIGTERM by PID, as conftest does) and any worker that
    outlived its supervisor (or that a test SIGSTOPped) is killed by PID.
    """

    def __init__(self, serve) -> None:
        self._serve = serve
        self.servers: list[Server] = []
        self.extra: set[int] = set()

    def __call__(self, *args, **kwargs) -> Server:
        server = self._serve(*args, **kwargs)
        self.servers.append(server)
        return server

    def add(self, server: Server) -> Server:
        self.servers.append(server)
        return server

    def close(self) -> None:
        pids = set(self.extra)
        for server in self.servers:
            pids |= workers(server) | booted(server)
        for pid in self.extra:
            if alive(pid) and is_wizgy(pid):
                os.kill(pid, signal.SIGCONT)
        for server in self.servers:
            server.stop()
        # workers get a moment to notice their supervisor is gone before being killed
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline and any(alive(p) and is_wizgy(p) for p in pids):
            time.sleep(0.05)
        kill_leftovers(pids)


def tracked(serve) -> Iterator[Tracked]:
    """Body of a per-module ``wserve`` fixture: ``yield from tracked(serve)``."""
    handle = Tracked(serve)
    try:
        yield handle
    finally:
        handle.close()


def get_json(addr, path: str = "/pid", timeout: float = 5.0) -> dict:
    resp = request(addr, "GET", path, timeout=timeout)
    assert resp.status == 200, (resp.status, resp.body[:200])
    return resp.json()


def get_pid(addr, timeout: float = 5.0) -> int:
    return int(get_json(addr, "/pid", timeout)["pid"])


class Load:
    """``clients`` threads doing one-request-per-connection GETs for ``duration`` seconds.

    Bounded by time and by ``max_requests`` in total. Every result is kept as
    ``(monotonic time, ok, body or error text)``; failures are non-200 answers and any exception.
    """

    def __init__(
        self,
        addr,
        path: str = "/pid",
        clients: int = 8,
        duration: float = 3.0,
        max_requests: int = 20000,
        timeout: float = 5.0,
    ) -> None:
        self.addr = addr
        self.path = path
        self.clients = clients
        self.duration = duration
        self.max_requests = max_requests
        self.timeout = timeout
        self.results: list[tuple[float, bool, str]] = []
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self.started = 0.0

    def _client(self) -> None:
        deadline = self.started + self.duration
        while not self._stop.is_set() and time.monotonic() < deadline:
            with self._lock:
                if len(self.results) >= self.max_requests:
                    return
            try:
                resp = request(self.addr, "GET", self.path, timeout=self.timeout)
                ok = resp.status == 200
                text = resp.body.decode("latin-1") if ok else f"status {resp.status}"
            except Exception as exc:  # noqa: BLE001 - any failure counts
                ok, text = False, f"{type(exc).__name__}: {exc}"
            with self._lock:
                self.results.append((time.monotonic(), ok, text))

    def start(self) -> Load:
        self.started = time.monotonic()
        for _ in range(self.clients):
            thread = threading.Thread(target=self._client, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def join(self) -> Load:
        for thread in self._threads:
            thread.join(self.duration + self.timeout + 5)
        self._stop.set()
        return self

    def snapshot(self) -> list[tuple[float, bool, str]]:
        with self._lock:
            return list(self.results)

    @property
    def failures(self) -> list[tuple[float, bool, str]]:
        return [r for r in self.snapshot() if not r[1]]

    @property
    def successes(self) -> list[tuple[float, bool, str]]:
        return [r for r in self.snapshot() if r[1]]

    def summary(self) -> str:
        fails = self.failures
        return f"{len(self.snapshot())} requests, {len(fails)} failed" + (
            f"; first failures: {[f[2] for f in fails[:5]]}" if fails else ""
        )


class InFlight:
    """One request run in a background thread; ``wait()`` returns the Response or the exception."""

    def __init__(self, addr, path: str, timeout: float = 15.0) -> None:
        self.result: object = None
        self.finished_at: Optional[float] = None
        self._thread = threading.Thread(target=self._run, args=(addr, path, timeout), daemon=True)
        self._thread.start()

    def _run(self, addr, path: str, timeout: float) -> None:
        try:
            self.result = request(addr, "GET", path, timeout=timeout)
        except Exception as exc:  # noqa: BLE001 - reported to the test
            self.result = exc
        self.finished_at = time.monotonic()

    def wait(self, timeout: float) -> object:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"request still running after {timeout}s"
        return self.result


def wait_exit(server: Server, timeout: float) -> int:
    """Wait (bounded) for the supervisor to exit on its own; its exit code."""
    try:
        return server.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(
            f"wizgy still running {timeout}s later; log:\n{server.log()}"
        ) from None
