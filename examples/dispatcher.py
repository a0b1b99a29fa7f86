"""A middleware dispatcher: mount WSGI apps under URL prefixes, the way PEP 3333 describes.

A request for ``/api/items/7`` goes to the app mounted at ``/api`` with the prefix moved from
``PATH_INFO`` to ``SCRIPT_NAME`` (``SCRIPT_NAME="/api"``, ``PATH_INFO="/items/7"``), so the
mounted app can build its own URLs from ``SCRIPT_NAME``. A path that matches no mount is 404.

Mounted here:

* ``/hello`` -> ``hello.app`` (examples/hello.py)
* ``/api``   -> ``api_app``, which answers JSON describing what it saw.

Run with wizgy from the repository root::

    wizgy --chdir examples dispatcher:app
    curl http://127.0.0.1:8000/api/items/7?x=1

With ``--root-path /site`` wizgy itself strips ``/site`` first, and the mounted app sees
``SCRIPT_NAME="/site/api"``.
"""

import json

from hello import app as hello_app


def api_app(environ, start_response):
    """Echo the routing variables the mounted app received, as JSON."""
    body = json.dumps(
        {
            "app": "api",
            "script_name": environ.get("SCRIPT_NAME", ""),
            "path_info": environ.get("PATH_INFO", ""),
            "query_string": environ.get("QUERY_STRING", ""),
        }
    ).encode()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]


def not_found(environ, start_response):
    body = b"Not Found"
    start_response(
        "404 Not Found",
        [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))],
    )
    return [body]


class Dispatcher:
    """Route each request to the app mounted at the longest prefix of its PATH_INFO."""

    def __init__(self, mounts, default=not_found):
        # Longest prefix first, so "/api/v2" would win over "/api".
        self.mounts = sorted(mounts.items(), key=lambda item: len(item[0]), reverse=True)
        self.default = default

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        for prefix, app in self.mounts:
            # "/api" and "/api/..." match; "/apiary" does not.
            if path == prefix or path.startswith(prefix + "/"):
                environ = dict(environ)  # leave the caller's environ untouched
                environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + prefix
                environ["PATH_INFO"] = path[len(prefix) :]
                return app(environ, start_response)
        return self.default(environ, start_response)


app = Dispatcher({"/hello": hello_app, "/api": api_app})
application = app
