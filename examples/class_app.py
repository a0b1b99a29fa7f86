"""Class-based WSGI apps, both shapes PEP 3333 allows.

* ``Greeter``: an *instance* with ``__call__`` is the app; configure it once, call it per
  request. ``app = Greeter("Hello")`` answers ``GET /Ada`` with ``Hello, Ada!``.
* ``Countdown``: the *class* is the app. Calling it with ``(environ, start_response)`` makes an
  instance, and that instance is the response iterable: ``__iter__`` calls ``start_response``
  and yields the body, and the server calls ``close()`` when it is done (PEP 3333 requires it,
  even when the client goes away). ``close()`` writes ``countdown closed`` to ``wsgi.errors``, so
  you can watch it happen in wizgy's error log.

Run with wizgy from the repository root::

    wizgy --chdir examples class_app:app
    wizgy --chdir examples class_app:Countdown
"""

from urllib.parse import unquote


class Greeter:
    """A configurable app object: ``Greeter("Hi")(environ, start_response)``."""

    def __init__(self, greeting="Hello"):
        self.greeting = greeting

    def __call__(self, environ, start_response):
        # PATH_INFO is latin-1 "bytes in a str"; turn it back into UTF-8 text.
        raw = environ.get("PATH_INFO", "").encode("latin-1").decode("utf-8", "replace")
        name = unquote(raw.strip("/")) or "world"
        body = f"{self.greeting}, {name}!".encode()
        start_response(
            "200 OK",
            [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))],
        )
        return [body]


class Countdown:
    """The PEP 3333 "AppClass": each call makes a fresh iterable response with ``close()``."""

    def __init__(self, environ, start_response):
        self.environ = environ
        self.start_response = start_response
        self.closed = False

    def __iter__(self):
        # Calling start_response on the first iteration is allowed: the server sends no
        # headers before the first body chunk is produced.
        self.start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
        for n in (3, 2, 1):
            yield f"{n}\n".encode()
        yield b"liftoff!\n"

    def close(self):
        self.closed = True
        self.environ["wsgi.errors"].write("countdown closed\n")
        self.environ["wsgi.errors"].flush()


app = Greeter("Hello")
application = app
