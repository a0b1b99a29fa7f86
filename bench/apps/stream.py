"""stream: a generator of 100 chunks of 10 KiB, no Content-Length (chunked on HTTP/1.1)."""

CHUNK = b"y" * 10240


def _body():
    for _ in range(100):
        yield CHUNK


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return _body()
