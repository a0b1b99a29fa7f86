"""bench/mixed.sh: a fast route and a slow one in one app. ``/slow`` sleeps 10 ms (a database
call); any other path answers at once."""

import time


def app(environ, start_response):
    if environ["PATH_INFO"] == "/slow":
        time.sleep(0.01)
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]
