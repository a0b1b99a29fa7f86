"""An app for the operations tests (access-log formats, metrics): a known response.

``app`` answers ``ops!`` with ``Content-Type: text/x-ops``, ``X-Resp: r1`` and ``X-Pid`` (the
worker's pid); with a query ``sleep=S`` it first sleeps S seconds; ``/status/NNN`` answers with
that status.
"""

import os
import time
from urllib.parse import parse_qs


def app(environ, start_response):
    query = parse_qs(environ.get("QUERY_STRING", ""))
    if "sleep" in query:
        time.sleep(float(query["sleep"][0]))
    path = environ.get("PATH_INFO", "")
    status = "200 OK"
    if path.startswith("/status/"):
        code = path[len("/status/") :]
        status = f"{code} Status {code}"
    body = b"ops!"
    start_response(
        status,
        [
            ("Content-Type", "text/x-ops"),
            ("X-Resp", "r1"),
            ("X-Pid", str(os.getpid())),
            ("Content-Length", str(len(body))),
        ],
    )
    return [body]


application = app
