"""--metrics-bind: Prometheus metrics summed over the workers, parsed with prometheus_client's
parser and held to exactly the requests sent; /healthz and /readyz."""

from __future__ import annotations

import os
import re
import signal
import socket
import threading
import time

import pytest
from helpers import Reader, connect
from proc_util import wait_new_worker, wait_until, wait_workers
from prometheus_client.openmetrics.parser import text_string_to_metric_families

APP = "ops_apps:app"


class Metrics:
    """The endpoint of one server."""

    def __init__(self, server) -> None:
        match = server.wait_for(r"metrics and health on http://([\d.]+):(\d+)")
        self.addr = (match.group(1), int(match.group(2)))

    def get(self, path: str, method: str = "GET"):
        with connect(self.addr) as sock:
            sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: m\r\n\r\n".encode())
            return Reader(sock).response(method)

    def scrape(self) -> dict[tuple, float]:
        resp = self.get("/metrics")
        assert resp.status == 200, resp.body
        assert resp.header("content-type").startswith("application/openmetrics-text")
        samples = {}
        for family in text_string_to_metric_families(resp.body.decode()):
            for sample in family.samples:
                samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return samples


def value(samples: dict, name: str, **labels) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def exchange(addr, target: str = "/") -> tuple[int, int, int, str]:
    """One request on its own connection: (status, bytes sent, bytes received, worker pid)."""
    request = f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
    with connect(addr) as sock:
        sock.sendall(request)
        raw = b""
        while True:
            piece = sock.recv(65536)
            if not piece:
                break
            raw += piece
    status = int(raw.split(b" ", 2)[1])
    pid = re.search(rb"X-Pid: (\d+)", raw).group(1).decode()
    return status, len(request), len(raw), pid


class Sent:
    """What the test sent, to compare with what wizgy counted."""

    def __init__(self) -> None:
        self.classes = {"2xx": 0, "4xx": 0, "5xx": 0}
        self.bytes_in = 0
        self.bytes_out = 0
        self.pids: set[str] = set()
        self.count = 0

    def send(self, addr, target: str = "/") -> None:
        status, sent, received, pid = exchange(addr, target)
        self.classes[f"{status // 100}xx"] += 1
        self.bytes_in += sent
        self.bytes_out += received
        self.pids.add(pid)
        self.count += 1

    def until_both_workers_served(self, addr, limit: int = 400) -> None:
        for i in range(limit):
            self.send(addr, ["/", "/status/404", "/status/503"][i % 3])
            if len(self.pids) >= 2 and self.count >= 30:
                return
        raise AssertionError(f"only {self.pids} served {limit} requests")

    def check(self, samples: dict) -> None:
        for cls, n in self.classes.items():
            assert value(samples, "wizgy_requests_total", **{"class": cls}) == n, (cls, n)
        assert value(samples, "wizgy_requests_total", **{"class": "none"}) == 0
        assert value(samples, "wizgy_request_duration_seconds_count") == self.count
        assert value(samples, "wizgy_request_duration_seconds_bucket", le="+Inf") == self.count
        assert value(samples, "wizgy_app_queue_wait_seconds_count") == self.count
        assert value(samples, "wizgy_connections_accepted_total") == self.count
        assert value(samples, "wizgy_bytes_received_total") == self.bytes_in
        assert value(samples, "wizgy_bytes_sent_total") == self.bytes_out


def start(serve, *options):
    server = serve(APP, "--metrics-bind", "127.0.0.1:0", *options)
    return server, Metrics(server)


def test_counts_summed_over_two_workers_match_the_requests_sent(serve):
    server, metrics = start(serve, "--workers", "2", "--threads", "2")
    wait_workers(server, 2)
    sent = Sent()
    sent.until_both_workers_served(server.addr)
    samples = metrics.scrape()
    sent.check(samples)
    assert value(samples, "wizgy_workers", state="ready") == 2
    assert value(samples, "wizgy_requests_in_flight") == 0
    assert value(samples, "wizgy_connections_open") == 0
    assert value(samples, "wizgy_worker_rss_bytes") > 1_000_000
    assert value(samples, "wizgy_static_hits_total") == 0
    assert value(samples, "wizgy_access_log_dropped_total") == 0
    assert value(samples, "wizgy_build_info", version=wizgy_version()) == 1
    for reason in ("crash", "max-requests", "memory", "timeout", "reload"):
        assert value(samples, "wizgy_worker_restarts_total", reason=reason) == 0
    # cumulative buckets end at the count; the sum is in seconds
    buckets = sorted(
        (float(dict(k[1])["le"]), v)
        for k, v in samples.items()
        if k[0] == "wizgy_request_duration_seconds_bucket"
    )
    assert [v for _, v in buckets] == sorted(v for _, v in buckets)
    assert 0 < value(samples, "wizgy_request_duration_seconds_sum") < sent.count


def wizgy_version() -> str:
    import wizgy

    return wizgy.__version__


def test_a_sigkilled_worker_never_makes_a_counter_go_backwards(serve):
    server, metrics = start(serve, "--workers", "2", "--threads", "2")
    old = wait_workers(server, 2)
    sent = Sent()
    sent.until_both_workers_served(server.addr)
    before = metrics.scrape()
    sent.check(before)
    victim = int(sorted(sent.pids)[0])
    assert victim in old
    os.kill(victim, signal.SIGKILL)
    wait_new_worker(server, old)
    wait_workers(server, 2)
    after = metrics.scrape()
    sent.check(after)  # what the dead worker counted is kept, exactly
    for key, number in before.items():
        if key[0].endswith(("_total", "_count", "_sum", "_bucket")):
            assert after[key] >= number, key
    assert value(after, "wizgy_worker_restarts_total", reason="crash") == 1
    for _ in range(20):
        sent.send(server.addr)
    sent.check(metrics.scrape())


def test_the_in_flight_gauge_during_a_slow_request(serve):
    server, metrics = start(serve, "--threads", "4")
    done = threading.Event()

    def slow():
        exchange(server.addr, "/?sleep=1.5")
        done.set()

    threading.Thread(target=slow, daemon=True).start()
    wait_until(
        lambda: value(metrics.scrape(), "wizgy_requests_in_flight") == 1, 5, what="in flight 1"
    )
    during = metrics.scrape()
    assert value(during, "wizgy_connections_open") == 1
    assert value(during, "wizgy_requests_total", **{"class": "2xx"}) == 0
    assert done.wait(10)
    after = metrics.scrape()
    assert value(after, "wizgy_requests_in_flight") == 0
    assert value(after, "wizgy_requests_total", **{"class": "2xx"}) == 1
    assert value(after, "wizgy_request_duration_seconds_sum") >= 1.5


def test_health_and_readiness(serve):
    server, metrics = start(serve)
    assert metrics.get("/healthz").status == 200
    ready = metrics.get("/readyz")
    assert ready.status == 200 and ready.body == b"ready\n"
    assert metrics.get("/nope").status == 404
    head = metrics.get("/healthz", "HEAD")
    assert head.status == 200 and head.body == b""
    with connect(metrics.addr) as sock:
        sock.sendall(b"POST /metrics HTTP/1.1\r\nHost: m\r\nContent-Length: 0\r\n\r\n")
        assert Reader(sock).response().status == 405


def test_readyz_is_503_during_a_drain_while_healthz_stays_200(serve):
    server, metrics = start(serve, "--threads", "2", "--graceful-timeout", "10")
    assert metrics.get("/readyz").status == 200
    done = threading.Event()
    threading.Thread(
        target=lambda: (exchange(server.addr, "/?sleep=2"), done.set()), daemon=True
    ).start()
    wait_until(lambda: value(metrics.scrape(), "wizgy_requests_in_flight") == 1, 5, what="busy")
    server.proc.send_signal(signal.SIGTERM)
    wait_until(lambda: metrics.get("/readyz").status == 503, 5, what="not ready while draining")
    assert metrics.get("/healthz").status == 200
    assert not done.is_set(), "the drain was still going on"
    assert done.wait(10), "the request in flight finished"
    assert server.proc.wait(10) == 0


def test_readyz_is_503_during_the_shutdown_delay(serve):
    server, metrics = start(serve, "--shutdown-delay", "3")
    server.proc.send_signal(signal.SIGTERM)
    server.wait_for("stopping gracefully")
    assert metrics.get("/readyz").status == 503
    assert exchange(server.addr)[0] == 200, "still serving during the delay"


def test_restarts_are_counted_by_reason(serve):
    server, metrics = start(serve, "--max-requests", "5")
    for _ in range(12):
        exchange(server.addr)
    wait_until(
        lambda: value(metrics.scrape(), "wizgy_worker_restarts_total", reason="max-requests") >= 2,
        10,
        what="two max-requests restarts",
    )
    samples = metrics.scrape()
    assert value(samples, "wizgy_requests_total", **{"class": "2xx"}) == 12
    assert value(samples, "wizgy_worker_restarts_total", reason="crash") == 0


def test_static_hits_are_counted(serve, tmp_path):
    (tmp_path / "a.txt").write_text("static!")
    server, metrics = start(serve, "--static", f"/s={tmp_path}")
    with connect(server.addr) as sock:
        sock.sendall(b"GET /s/a.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert Reader(sock).response().body == b"static!"
        # Counted once the exchange is over, which the close says (the body alone races it).
        assert sock.recv(1) == b""
    samples = metrics.scrape()
    assert value(samples, "wizgy_static_hits_total") == 1
    assert value(samples, "wizgy_requests_total", **{"class": "2xx"}) == 1


def test_metrics_on_a_unix_socket(serve, tmp_path):
    path = tmp_path / "m.sock"
    server = serve(APP, "--metrics-bind", f"unix:{path}")
    server.wait_for("metrics and health on unix:")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(5)
        sock.connect(str(path))
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: m\r\n\r\n")
        assert Reader(sock).response().status == 200
    server.stop()
    assert not path.exists(), "the socket file is removed at exit"


def test_a_flood_of_idle_endpoint_connections_does_not_stop_scrapes(serve):
    server, metrics = start(serve)
    idle = [connect(metrics.addr) for _ in range(40)]
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                if metrics.get("/healthz").status == 200:
                    break
            except OSError:
                time.sleep(0.2)
        else:
            pytest.fail("the endpoint never answered while idle connections held it")
    finally:
        for sock in idle:
            sock.close()
