"""Echoes the request as JSON: the environ (JSON-able values, others by type name) and the body.

Most environ tests are one request against this app.
"""

import json


def _jsonable(value):
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, tuple):
        return list(value)
    return f"<{type(value).__name__}>"


def app(environ, start_response):
    body = environ["wsgi.input"].read()
    payload = {
        "environ": {key: _jsonable(value) for key, value in environ.items()},
        "types": {key: type(value).__name__ for key, value in environ.items()},
        "body": body.decode("latin-1"),
    }
    data = json.dumps(payload).encode()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
    )
    return [data]


application = app
