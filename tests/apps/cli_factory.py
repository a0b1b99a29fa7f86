"""``cli_factory:create(...)``: an app factory whose app reports the arguments it was built with."""

import json


def create(*args, **kwargs):
    payload = json.dumps({"args": list(args), "kwargs": kwargs}).encode()

    def app(environ, start_response):
        start_response(
            "200 OK",
            [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))],
        )
        return [payload]

    return app


def boom():
    raise ValueError("cli_factory boom: the factory failed")
