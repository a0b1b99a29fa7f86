"""Path routing for the multi-route test apps: one WSGI app from a {PATH_INFO: handler} table."""


def router(routes):
    """A WSGI app that calls ``routes[PATH_INFO]``, or answers 404 for an unknown path."""

    def app(environ, start_response):
        handler = routes.get(environ["PATH_INFO"])
        if handler is None:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"no such route"]
        return handler(environ, start_response)

    return app
