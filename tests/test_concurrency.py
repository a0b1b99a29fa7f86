"""--threads is honoured: blocking apps run in parallel up to the pool size, and no further.

A behavioural check of parallelism (200 ms sleeps), not a benchmark.
"""

from __future__ import annotations

import threading
import time

from helpers import request


def four_concurrent_requests(addr) -> tuple[float, list]:
    """Fire four requests at once at ``http_apps:sleepy``: (wall seconds, responses)."""
    barrier = threading.Barrier(4)
    responses: list = [None] * 4
    errors: list = []

    def worker(index: int) -> None:
        try:
            barrier.wait(5)
            responses[index] = request(addr, "GET", f"/sleep{index}", timeout=10)
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(15)
    elapsed = time.monotonic() - started
    assert not errors, errors
    assert all(resp is not None and resp.status == 200 for resp in responses), responses
    return elapsed, responses


def test_four_threads_run_four_200ms_requests_in_parallel(serve):
    server = serve("http_apps:sleepy", "--threads", "4")
    assert request(server.addr, "GET", "/warm-up").status == 200
    elapsed, responses = four_concurrent_requests(server.addr)
    print(f"--threads 4: four 200 ms requests took {elapsed:.3f} s")
    assert elapsed < 0.6, f"four 200 ms requests took {elapsed:.3f} s with --threads 4"
    assert len({resp.body for resp in responses}) == 4, [resp.body for resp in responses]


def test_one_thread_runs_four_200ms_requests_one_after_another(serve):
    server = serve("http_apps:sleepy", "--threads", "1")
    assert request(server.addr, "GET", "/warm-up").status == 200
    elapsed, _ = four_concurrent_requests(server.addr)
    print(f"--threads 1: four 200 ms requests took {elapsed:.3f} s")
    assert elapsed >= 0.75, f"four 200 ms requests took only {elapsed:.3f} s with --threads 1"
