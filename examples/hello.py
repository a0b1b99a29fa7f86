"""The smallest WSGI app: a plain function that says hello.

Run it with wizgy from the repository root::

    wizgy --chdir examples hello:app

then ``curl http://127.0.0.1:8000/`` prints ``Hello, world!``. ``wizgy --chdir examples hello``
works too: a bare module name means ``module:application``.
"""

BODY = b"Hello, world!"


def app(environ, start_response):
    """Answer every request with the same 13-byte body and an exact Content-Length."""
    start_response(
        "200 OK",
        [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(BODY)))],
    )
    return [BODY]


application = app
