"""Apps for the process/operations tests (workers, signals, recycling, binding).

``app`` dispatches on PATH_INFO:

- ``/`` or ``/pid``: JSON with the serving pid, the pid that imported this module and
  wsgi.multiprocess;
- ``/sleep?S``: writes ``proc-sleep-start <pid>`` to wsgi.errors, sleeps S seconds, answers;
- ``/exit``: the worker calls ``os._exit(3)``;
- ``/alloc``: keeps another ~20 MiB (touched, so it is resident) in a module-level list;
- ``/very_slow``: ``very_slow_view`` sleeps 30 s (for --request-timeout stack dumps).
"""

import json
import os
import time

IMPORT_PID = os.getpid()
HOARD = []
ALLOC_BYTES = 20 * 1024 * 1024


def _send(start_response, status, payload):
    data = json.dumps(payload).encode()
    start_response(
        status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
    )
    return [data]


def info_view(environ, start_response):
    return _send(
        start_response,
        "200 OK",
        {
            "pid": os.getpid(),
            "import_pid": IMPORT_PID,
            "multiprocess": environ["wsgi.multiprocess"],
        },
    )


def sleep_view(environ, start_response):
    seconds = float(environ.get("QUERY_STRING") or "2")
    errors = environ["wsgi.errors"]
    errors.write(f"proc-sleep-start {os.getpid()}\n")
    errors.flush()
    time.sleep(seconds)
    return _send(start_response, "200 OK", {"pid": os.getpid(), "slept": seconds})


def exit_view(environ, start_response):
    os._exit(3)


def alloc_view(environ, start_response):
    HOARD.append(b"\x01" * ALLOC_BYTES)
    return _send(start_response, "200 OK", {"pid": os.getpid(), "hoard": len(HOARD)})


def very_slow_view(environ, start_response):
    time.sleep(30)
    return _send(start_response, "200 OK", {"pid": os.getpid(), "slow": True})


ROUTES = {
    "/": info_view,
    "/pid": info_view,
    "/sleep": sleep_view,
    "/exit": exit_view,
    "/alloc": alloc_view,
    "/very_slow": very_slow_view,
}


def app(environ, start_response):
    view = ROUTES.get(environ["PATH_INFO"])
    if view is None:
        return _send(start_response, "404 Not Found", {"pid": os.getpid()})
    return view(environ, start_response)


application = app


def printing(environ, start_response):
    """Prints to (pipe-buffered) stdout: the line must survive the worker's exit."""
    print("PRINTED-BY-THE-APP", environ["PATH_INFO"])
    start_response("200 OK", [("Content-Length", "2")])
    return [b"ok"]
