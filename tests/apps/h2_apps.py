"""Apps for tests/test_http2.py, routed on PATH_INFO.

``/env`` echoes the environ (str/int/bool values), the body's length and sha256, and the PID;
``/sleep?s=S`` sleeps S seconds; ``/big?n=N`` streams N bytes from a generator; ``/stream?marker=P``
streams slowly and writes P when its iterable's close() is called; ``/noread`` answers without
reading the body; ``/length?declared=D&sent=S`` promises D bytes and sends S; ``/file?path=P``
returns P through wsgi.file_wrapper; ``/headers`` sets a Proxy-Connection field; anything else
says hello.
"""

import hashlib
import json
import os
import time
from urllib.parse import parse_qs


def _query(environ):
    return {k: v[0] for k, v in parse_qs(environ["QUERY_STRING"]).items()}


class _Slow:
    def __init__(self, marker):
        self.marker = marker

    def __iter__(self):
        for i in range(200):
            yield f"piece {i}\n".encode() * 100
            time.sleep(0.05)

    def close(self):
        with open(self.marker, "w") as f:
            f.write("closed")


def app(environ, start_response):
    path = environ["PATH_INFO"]
    query = _query(environ)
    if path.startswith("/env"):
        body = environ["wsgi.input"].read()
        env = {k: v for k, v in environ.items() if isinstance(v, (str, int, bool))}
        data = json.dumps(
            {
                "environ": env,
                "body_length": len(body),
                "body_sha256": hashlib.sha256(body).hexdigest(),
                "pid": os.getpid(),
            }
        ).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [data]
    if path == "/sleep":
        time.sleep(float(query.get("s", "0.5")))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [f"slept {os.getpid()}".encode()]
    if path == "/big":
        n = int(query["n"])
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return (b"x" * min(65536, n - i) for i in range(0, n, 65536))
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return _Slow(query["marker"])
    if path == "/noread":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "7")])
        return [b"no read"]
    if path == "/length":
        declared, sent = int(query["declared"]), int(query["sent"])
        start_response("200 OK", [("Content-Length", str(declared))])
        return [b"y" * sent]
    if path == "/file":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](open(query["path"], "rb"))
    if path == "/headers":
        start_response(
            "201 Created",
            [("Content-Type", "text/plain"), ("Proxy-Connection", "keep-alive"), ("X-Seen", "1")],
        )
        return [b"headers"]
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
    return [b"hello"]
