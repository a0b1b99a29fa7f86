"""Apps for tests/test_cli.py."""

import os


def hello(environ, start_response):
    body = b"hello from cli_apps"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def boom(environ, start_response):
    """Raises before start_response: 500 and a traceback in the error log."""
    raise RuntimeError("cli_apps boom marker")


def cwd(environ, start_response):
    body = os.getcwd().encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
