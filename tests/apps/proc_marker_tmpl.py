"""Template copied into a temporary directory by the SIGHUP and --reload tests.

The tests rewrite the ``MARKER = ...`` line (with markers of different lengths, so a stale .pyc
can never match) and check which marker the served code answers with.
"""

import os

MARKER = "marker-one"


def app(environ, start_response):
    body = f"{MARKER} {os.getpid()}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


application = app
