"""hello: the smallest WSGI app, a 13-byte body in a list (the server knows the length)."""

BODY = b"Hello, world!"
HEADERS = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", "13")]


def app(environ, start_response):
    start_response("200 OK", list(HEADERS))
    return [BODY]
