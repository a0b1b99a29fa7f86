"""Apps for tests/test_tls.py, routed on PATH_INFO: ``/env`` echoes the environ (JSON-able
values), the body and the worker's PID; ``/chunks`` streams a generator (a chunked response);
``/file?path=P`` returns P through wsgi.file_wrapper; anything else says hello."""

import json
import os
from urllib.parse import parse_qs


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/env":
        body = environ["wsgi.input"].read()
        env = {k: v for k, v in environ.items() if isinstance(v, (str, int, bool))}
        data = json.dumps(
            {"environ": env, "body": body.decode("latin-1"), "pid": os.getpid()}
        ).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [data]
    if path == "/chunks":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return (f"chunk {i}\n".encode() * 100 for i in range(50))
    if path == "/file":
        query = parse_qs(environ["QUERY_STRING"])
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](open(query["path"][0], "rb"))
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
    return [b"hello"]
