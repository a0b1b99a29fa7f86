"""Worker processes: --workers, WEB_CONCURRENCY, --preload, dying workers, boot failures,
SIGTTIN/SIGTTOU.
"""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import run_wizgy
from helpers import request
from proc_util import (
    Load,
    alive,
    get_json,
    get_pid,
    holds_for,
    parent_of,
    tracked,
    wait_new_worker,
    wait_workers,
    workers,
)

APP = "proc_apps:app"


@pytest.fixture
def wserve(serve):
    yield from tracked(serve)


def test_three_workers_are_children_of_the_supervisor_and_share_the_load(wserve):
    server = wserve(APP, "--workers", "3", "--threads", "2")
    sup = server.proc.pid
    kids = wait_workers(server, 3)
    assert sup not in kids
    assert all(parent_of(pid) == sup for pid in kids)
    assert holds_for(lambda: workers(server) == kids, 0.5), (kids, workers(server))

    def fetch(_):
        return get_json(server.addr, "/sleep?0.05")["pid"]

    # many connections at once, each held by a short sleep, so no single worker takes them all
    with ThreadPoolExecutor(16) as pool:
        pids = list(pool.map(fetch, range(96)))
    seen = set(pids)
    print("requests per worker pid:", {pid: pids.count(pid) for pid in seen})
    assert sup not in seen
    assert seen <= kids, (seen, kids)
    assert len(seen) >= 2, f"all 96 requests went to one worker: {seen}"


@pytest.mark.parametrize("count, expected", [("3", True), ("1", False)])
def test_wsgi_multiprocess_is_true_only_with_more_than_one_worker(wserve, count, expected):
    server = wserve(APP, "--workers", count, "--threads", "2")
    wait_workers(server, int(count))
    for _ in range(3):
        assert get_json(server.addr)["multiprocess"] is expected


def test_web_concurrency_sets_the_worker_count(wserve):
    server = wserve(APP, "--threads", "2", env={"WEB_CONCURRENCY": "2"})
    kids = wait_workers(server, 2)
    assert holds_for(lambda: workers(server) == kids, 0.5)
    assert get_json(server.addr)["multiprocess"] is True


def test_the_workers_flag_overrides_web_concurrency(wserve):
    server = wserve(APP, "--workers", "1", "--threads", "2", env={"WEB_CONCURRENCY": "2"})
    kids = wait_workers(server, 1)
    assert holds_for(lambda: workers(server) == kids, 0.5), workers(server)
    assert get_json(server.addr)["multiprocess"] is False


def test_preload_imports_the_app_once_in_the_supervisor(wserve):
    server = wserve(APP, "--workers", "2", "--threads", "2", "--preload")
    kids = wait_workers(server, 2)
    for _ in range(4):
        info = get_json(server.addr)
        assert info["import_pid"] == server.proc.pid, (info, server.proc.pid)
        assert info["pid"] in kids


def test_without_preload_each_worker_imports_the_app(wserve):
    server = wserve(APP, "--workers", "2", "--threads", "2")
    kids = wait_workers(server, 2)
    for _ in range(4):
        info = get_json(server.addr)
        assert info["import_pid"] == info["pid"], info
        assert info["pid"] in kids
        assert info["import_pid"] != server.proc.pid


def test_a_sigkilled_worker_under_load_costs_at_most_its_in_flight_requests(wserve):
    server = wserve(APP, "--workers", "2", "--threads", "4")
    kids = wait_workers(server, 2)
    load = Load(server.addr, "/sleep?0.02", clients=8, duration=3.0).start()
    time.sleep(1.0)
    victim = min(kids)
    killed_at = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    fresh = wait_new_worker(server, kids, timeout=2.0)
    replaced_after = time.monotonic() - killed_at
    load.join()
    print(
        f"SIGKILL of worker {victim}: {load.summary()}; replacement {fresh} after "
        f"{replaced_after:.2f}s"
    )
    assert fresh != victim
    assert len(load.failures) <= 8, load.summary()
    server.wait_for(rf"worker {victim} killed by signal SIGKILL", 2.0)
    # the service kept going after the kill
    assert any(t > killed_at + 0.5 for t, ok, _ in load.successes), load.summary()
    wait_workers(server, 2)


def test_a_worker_that_exits_with_status_3_is_logged_and_replaced(wserve):
    server = wserve(APP, "--workers", "1", "--threads", "2")
    (first,) = wait_workers(server, 1)
    assert get_pid(server.addr) == first
    try:
        resp = request(server.addr, "GET", "/exit", timeout=5)
    except Exception:  # noqa: BLE001 - the worker dies mid-exchange: any failure is fine
        resp = None
    assert resp is None or resp.status != 200
    server.wait_for(rf"worker {first} exited with status 3\b", 3.0)
    # the next request is served, by a new worker
    pid = get_pid(server.addr, timeout=5)
    assert pid != first
    assert pid in workers(server)


def test_a_segfaulting_worker_is_logged_and_replaced(wserve):
    server = wserve(APP, "--workers", "2", "--threads", "2")
    kids = wait_workers(server, 2)
    victim = max(kids)
    os.kill(victim, signal.SIGSEGV)
    server.wait_for(rf"worker {victim} killed by signal SIGSEGV", 3.0)
    fresh = wait_new_worker(server, kids, timeout=3.0)
    assert not alive(victim)
    assert wait_workers(server, 2) == (kids - {victim}) | {fresh}
    for _ in range(4):
        assert get_pid(server.addr) in workers(server)


@pytest.mark.parametrize(
    "spec, name, raises",
    [("nope:app", "nope", False), ("proc_broken:app", "proc_broken", True)],
    ids=["missing-module", "module-raises-on-import"],
)
def test_a_boot_failure_with_two_workers_exits_1_promptly_with_one_error_line(spec, name, raises):
    started = time.monotonic()
    result = run_wizgy(
        "--bind", "127.0.0.1:0", "--workers", "2", "--threads", "2", spec, timeout=20
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 1, (result.returncode, result.stderr)
    assert elapsed < 5.0, f"took {elapsed:.1f}s; stderr:\n{result.stderr}"
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if "wizgy: error:" in line]
    assert len(errors) == 1, result.stderr
    assert lines[0] == errors[0], result.stderr
    assert name in errors[0], errors[0]
    # and nothing else: no per-worker repeats, no respawn noise; an app that raised has its
    # traceback, once, right after the line (issue 23)
    if raises:
        assert lines[1] == "Traceback (most recent call last):", result.stderr
        assert result.stderr.count("Traceback") == 1, result.stderr
        assert not any("INFO" in line or "WARN" in line for line in lines), result.stderr
    else:
        assert lines == errors, result.stderr


def test_sigttin_adds_a_worker_and_sigttou_removes_one_but_never_the_last(wserve):
    server = wserve(APP, "--workers", "2", "--threads", "2")
    sup = server.proc.pid
    kids = wait_workers(server, 2)

    os.kill(sup, signal.SIGTTIN)
    three = wait_workers(server, 3, timeout=5)
    assert kids < three

    os.kill(sup, signal.SIGTTOU)
    two = wait_workers(server, 2, timeout=5)
    assert two < three

    os.kill(sup, signal.SIGTTOU)
    one = wait_workers(server, 1, timeout=5)
    assert one < two

    os.kill(sup, signal.SIGTTOU)
    assert holds_for(lambda: workers(server) == one, 1.5), (one, workers(server))
    assert server.proc.poll() is None
    for _ in range(3):
        assert get_pid(server.addr) in one
