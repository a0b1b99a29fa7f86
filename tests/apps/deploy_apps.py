"""The app the deployment tests put behind nginx, HAProxy, systemd and Kubernetes settings.

``/`` (and any other path) answers who the app thinks the client is, as JSON; ``/upload``
hashes the request body as it streams in (never holding it); ``/stream`` sends a first line at
once and a second one 1.5 s later; ``/sleep?S`` sleeps S seconds.
"""

import hashlib
import json
import os
import time


def _json(start_response, payload):
    data = json.dumps(payload).encode()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
    )
    return [data]


def _stream():
    yield b"first\n"
    time.sleep(1.5)
    yield b"last\n"


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/upload":
        digest = hashlib.sha256()
        size = 0
        while True:
            piece = environ["wsgi.input"].read(1 << 20)
            if not piece:
                break
            digest.update(piece)
            size += len(piece)
        return _json(start_response, {"size": size, "sha256": digest.hexdigest()})
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return _stream()
    if path == "/sleep":
        seconds = float(environ.get("QUERY_STRING") or "1")
        time.sleep(seconds)
        return _json(start_response, {"slept": seconds, "pid": os.getpid()})
    return _json(
        start_response,
        {
            "pid": os.getpid(),
            "remote_addr": environ["REMOTE_ADDR"],
            "remote_port": environ.get("REMOTE_PORT"),
            "scheme": environ["wsgi.url_scheme"],
            "host": environ.get("HTTP_HOST"),
            "x_forwarded_for": environ.get("HTTP_X_FORWARDED_FOR"),
            "path": path,
        },
    )


application = app
