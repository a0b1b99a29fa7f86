"""The Python-only cost of one app: call it in a loop with no server (the limit of any server).

    python pycost.py MODULE:APP [SECONDS]

The environ is prebuilt once the way a server would for wrk's request (`GET / HTTP/1.1`,
`Host: 127.0.0.1:8000`) and copied for each call (a server builds a fresh one each time); for the
post app it carries a fresh 64 KiB `wsgi.input`. start_response is a no-op; the iterable is
consumed and closed. wsgi.file_wrapper returns the file without reading it, as a server that
uses sendfile would. Prints one JSON line: the median µs per call over 5 timed batches.
"""

import importlib
import io
import json
import os
import statistics
import sys
import time


class FileWrapper:
    """What a sendfile server's wrapper costs the app: nothing but holding the file."""

    def __init__(self, f, blksize=8192):
        self.f = f

    def __iter__(self):
        return iter(())

    def close(self):
        self.f.close()


def environ_for(spec):
    env = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": "/",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "REMOTE_PORT": "40000",
        "HTTP_HOST": "127.0.0.1:8000",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "wsgi.file_wrapper": FileWrapper,
    }
    body = b""
    if spec.startswith("post:"):
        body = b"p" * 65536
        env.update(
            REQUEST_METHOD="POST",
            CONTENT_LENGTH=str(len(body)),
            CONTENT_TYPE="application/octet-stream",
        )
    return env, body


def main():
    spec = sys.argv[1]
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 1.0
    sys.path.insert(0, os.getcwd())
    module, _, name = spec.partition(":")
    app = getattr(importlib.import_module(module), name)
    template, body = environ_for(spec)

    def start_response(status, headers, exc_info=None):
        return None

    def call():
        env = dict(template)
        env["wsgi.input"] = io.BytesIO(body)
        result = app(env, start_response)
        try:
            for _ in result:
                pass
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()

    # Warm up (imports, caches), then size a batch to ~seconds/5.
    t0 = time.perf_counter()
    n = 0
    while time.perf_counter() - t0 < min(0.3, seconds / 3):
        call()
        n += 1
    per = (time.perf_counter() - t0) / n
    batch = max(5, int(seconds / 5 / per))
    samples = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(batch):
            call()
        samples.append((time.perf_counter() - t0) / batch * 1e6)
    us = statistics.median(samples)
    print(
        json.dumps(
            {
                "app": spec,
                "us_per_call": round(us, 2),
                "max_rps_one_core": round(1e6 / us),
                "calls": batch * 5,
                "samples_us": [round(s, 2) for s in samples],
            }
        )
    )


if __name__ == "__main__":
    main()
