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


def concurrent_requests(addr, path: str, clients: int, each: int) -> list:
    """``clients`` threads each make ``each`` requests to ``path`` at once: the bodies."""
    barrier = threading.Barrier(clients)
    bodies: list = []
    errors: list = []

    def worker() -> None:
        try:
            barrier.wait(5)
            for _ in range(each):
                resp = request(addr, "GET", path, timeout=20)
                assert resp.status == 200, resp.status
                bodies.append(resp.body)
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors[:3]
    assert len(bodies) == clients * each
    return bodies


def test_an_app_that_keeps_the_gil_is_not_run_by_threads_taking_turns(serve):
    # A request that runs Python for 3 ms looks like a blocked one from outside; threads woken
    # for it would only wait for the GIL and take 5 ms turns with the running one (every such
    # thread adds a turn to every request's latency). With the default 64 threads and 16
    # clients, the requests must stay on the few threads that actually get the GIL.
    server = serve("http_apps:spin")
    bodies = concurrent_requests(server.addr, "/", clients=16, each=12)
    threads = {body for body in bodies}
    print(f"16 clients x 12 GIL-bound requests ran on {len(threads)} app threads")
    assert len(threads) <= 3, sorted(threads)


def test_blocking_requests_after_gil_bound_load_still_run_in_parallel(serve):
    # The GIL-bound load above holds back waking threads for a while: that must not last.
    server = serve("http_apps:spin")
    concurrent_requests(server.addr, "/", clients=16, each=6)
    time.sleep(0.1)
    started = time.monotonic()
    bodies = concurrent_requests(server.addr, "/sleep", clients=16, each=1)
    elapsed = time.monotonic() - started
    print(f"16 sleeps of 200 ms after GIL-bound load took {elapsed:.3f} s")
    assert elapsed < 1.0, f"16 x 200 ms sleeps took {elapsed:.3f} s with 64 threads"
    assert len(set(bodies)) >= 8, sorted(set(bodies))


def test_requests_that_mix_python_and_waiting_run_on_several_threads(serve):
    # 2 ms of Python then 6 ms of waiting: one thread does 125 requests/s, the GIL allows
    # 500. A thread woken while another runs Python finds the GIL busy and holds back wakes
    # for a while: that must not leave the waits of such a mix to one thread.
    server = serve("http_apps:spin")
    started = time.monotonic()
    bodies = concurrent_requests(server.addr, "/mixed", clients=16, each=10)
    elapsed = time.monotonic() - started
    threads = set(bodies)
    print(f"16 clients x 10 mixed requests: {elapsed:.2f} s on {len(threads)} app threads")
    # 160 requests: 1.28 s on one thread, 0.32 s at the GIL's limit.
    assert elapsed < 0.8, f"160 mixed requests took {elapsed:.2f} s on {len(threads)} threads"
    assert len(threads) >= 2, threads
