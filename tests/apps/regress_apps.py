"""Apps that reproduce bugs found in review; each route is one past defect."""

import os
import tempfile
import threading

_FILE = os.path.join(tempfile.mkdtemp(prefix="wizgy-regress-"), "data.bin")
with open(_FILE, "wb") as f:
    f.write(bytes(range(256)) * 200)  # 51,200 bytes


def write_then_file(environ, start_response):
    write = start_response("200 OK", [("Content-Type", "application/octet-stream")])
    write(b"HEAD-")
    return environ["wsgi.file_wrapper"](open(_FILE, "rb"))


def write_then_read(environ, start_response):
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(b"hello ")
    data = environ["wsgi.input"].read()
    return [b"got %d" % len(data)]


def read_reports(environ, start_response):
    try:
        data = environ["wsgi.input"].read()
        outcome = f"read returned {len(data)} bytes"
    except Exception as exc:
        outcome = f"read raised {type(exc).__name__}"
    environ["wsgi.errors"].write(f"REGRESS-READ {outcome}\n")
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [outcome.encode()]


def background_writer(environ, start_response):
    write = start_response("200 OK", [("Content-Type", "text/plain")])

    def spam():
        try:
            for _ in range(2000):
                write(b"y" * 65536)
        except Exception:
            pass

    threading.Thread(target=spam, daemon=True).start()
    return [b"main"]


def interim_status(environ, start_response):
    start_response("100 Continue", [])
    return []


def head_without_length(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    if environ["REQUEST_METHOD"] == "HEAD":
        return ()
    return (chunk for chunk in [b"0123456789", b"0123456789"])


def hello(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
    return [b"hello"]


ROUTES = {
    "/write-then-file": write_then_file,
    "/write-then-read": write_then_read,
    "/read-reports": read_reports,
    "/background-writer": background_writer,
    "/interim-status": interim_status,
    "/head-without-length": head_without_length,
    "/hello": hello,
}


def app(environ, start_response):
    return ROUTES[environ["PATH_INFO"]](environ, start_response)
