"""Apps that fail, for the error-handling clauses (tests/test_app_errors.py).

One WSGI callable, ``app``, routed on PATH_INFO; ``token`` in the query string makes log lines
unique to one test.
"""

from urllib.parse import parse_qs

from routing import router

TEXT = [("Content-Type", "text/plain")]


def _token(environ):
    parsed = parse_qs(environ.get("QUERY_STRING", ""))
    return parsed.get("token", ["-"])[0]


def ok(environ, start_response):
    start_response("200 OK", [*TEXT, ("Content-Length", "2")])
    return [b"ok"]


def raise_before(environ, start_response):
    raise RuntimeError(f"pep-error-before-headers {_token(environ)}")


def raise_after_start_response(environ, start_response):
    start_response("200 OK", TEXT)
    raise RuntimeError(f"pep-error-after-start-response {_token(environ)}")


def raise_in_first_next(environ, start_response):
    start_response("200 OK", TEXT)
    token = _token(environ)

    def body():
        raise RuntimeError(f"pep-error-in-first-next {token}")
        yield b"never"  # a generator all the same

    return body()


def raise_after_headers(environ, start_response):
    start_response("200 OK", TEXT)
    token = _token(environ)

    def body():
        yield b"part-one;"
        raise RuntimeError(f"pep-error-after-headers {token}")

    return body()


def raise_after_headers_with_length(environ, start_response):
    start_response("200 OK", [*TEXT, ("Content-Length", "100")])
    token = _token(environ)

    def body():
        yield b"part-one;"
        raise RuntimeError(f"pep-error-after-headers {token}")

    return body()


def errors_write(environ, start_response):
    errors = environ["wsgi.errors"]
    errors.write(f"pep-errors-write {_token(environ)}\n")
    errors.flush()
    return ok(environ, start_response)


def errors_writelines(environ, start_response):
    errors = environ["wsgi.errors"]
    token = _token(environ)
    errors.writelines([f"pep-errors-line-one {token}\n", f"pep-errors-line-two {token}\n"])
    errors.flush()
    return ok(environ, start_response)


def errors_print(environ, start_response):
    print("pep-errors-print", _token(environ), file=environ["wsgi.errors"])
    environ["wsgi.errors"].flush()
    return ok(environ, start_response)


ROUTES = {
    "/ok": ok,
    "/raise-before": raise_before,
    "/raise-after-start-response": raise_after_start_response,
    "/raise-in-first-next": raise_in_first_next,
    "/raise-after-headers": raise_after_headers,
    "/raise-after-headers-with-length": raise_after_headers_with_length,
    "/errors-write": errors_write,
    "/errors-writelines": errors_writelines,
    "/errors-print": errors_print,
}


app = router(ROUTES)
