"""The app behind the static-file tests: says what reached it, and can spin holding the GIL.

``/spin?MARKER`` writes MARKER (a file path), then loops in pure Python for 5 seconds with a
30 s switch interval, so no other Python thread runs meanwhile: a request answered during the
spin was answered without the GIL.
"""

import os
import sys
import time
from urllib.parse import unquote


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/spin":
        marker = unquote(environ["QUERY_STRING"])
        old = sys.getswitchinterval()
        sys.setswitchinterval(30)
        try:
            with open(marker, "w") as f:
                f.write("spinning")
            end = time.monotonic() + 5.0
            spins = 0
            while time.monotonic() < end:
                spins += 1
        finally:
            sys.setswitchinterval(old)
        body = f"spun {spins}".encode()
    elif path == "/pid":
        body = str(os.getpid()).encode()
    else:
        body = f"app: {environ['REQUEST_METHOD']} {path}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
