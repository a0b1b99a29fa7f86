"""Routes for tests/test_inline.py: each answers with the OS name of the thread it ran on
(``wizgy-io`` when the I/O thread ran it inline, ``wizgy-app-N`` on an app thread)."""

import json
import threading
import time

_local = threading.local()


def thread_name() -> str:
    with open(f"/proc/self/task/{threading.get_native_id()}/comm") as f:
        return f.read().strip()


def app(environ, start_response):
    path = environ["PATH_INFO"]
    query = environ.get("QUERY_STRING", "")
    _local.calls = getattr(_local, "calls", 0) + 1
    report = {"thread": thread_name(), "local_calls": _local.calls}
    if path == "/sometimes-slow" and "slow" in query:
        time.sleep(float(query.split("=", 1)[1]))
    elif path == "/sleep":
        time.sleep(0.05)
    elif path == "/echo":
        body = environ["wsgi.input"].read()
        report["body_len"] = len(body)
        report["body_sum"] = sum(body)
    elif path == "/big":
        chunk = b"x" * 65536
        report["chunks"] = 16
        payload = json.dumps(report).encode() + b"\n"
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return [payload] + [chunk] * 16
    body = json.dumps(report).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]
