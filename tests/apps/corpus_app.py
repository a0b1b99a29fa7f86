"""The request-corpus app (tests/test_corpus.py): echoes the environ and body as JSON, like
``echo:app``, and first logs ``CORPUS-APP-CALLED <PATH_INFO>`` on wsgi.errors so a test can
prove that the app never ran for a refused request.

PATH_INFO is logged with bytes outside printable ASCII (and the space) written as ``\\xNN`` so
one request is always exactly one log line.
"""

import json


def _jsonable(value):
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, tuple):
        return list(value)
    return f"<{type(value).__name__}>"


def _printable(text: str) -> str:
    return "".join(c if 0x20 < ord(c) < 0x7F else f"\\x{ord(c):02x}" for c in text)


def app(environ, start_response):
    errors = environ["wsgi.errors"]
    errors.write(f"CORPUS-APP-CALLED {_printable(environ.get('PATH_INFO', ''))}\n")
    errors.flush()
    body = environ["wsgi.input"].read()
    payload = {
        "environ": {key: _jsonable(value) for key, value in environ.items()},
        "body": body.decode("latin-1"),
    }
    data = json.dumps(payload).encode()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
    )
    return [data]


application = app
