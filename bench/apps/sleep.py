"""sleep: an app that waits 10 ms (a database or upstream call), then says hello."""

import time

BODY = b"Hello, world!"


def app(environ, start_response):
    time.sleep(0.01)
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "13")])
    return [BODY]
