"""Apps for --mount and --scripts tests: each reports which app answered and what it saw."""

import json
import os


def _reporter(name):
    def app(environ, start_response):
        body = json.dumps(
            {
                "app": name,
                "SCRIPT_NAME": environ["SCRIPT_NAME"],
                "PATH_INFO": environ["PATH_INFO"],
                "QUERY_STRING": environ["QUERY_STRING"],
                "pid": os.getpid(),
            }
        ).encode()
        start_response(
            "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        )
        return [body]

    return app


main = _reporter("main")
api = _reporter("api")
api_v2 = _reporter("api_v2")
admin = _reporter("admin")
