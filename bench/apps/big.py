"""big: a 1 MiB body in one bytes object, in a list."""

BODY = b"x" * (1 << 20)


def app(environ, start_response):
    start_response(
        "200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(len(BODY)))]
    )
    return [BODY]
