"""close: the hello app, driven with Connection: close (a new connection per request)."""

from hello import app  # noqa: F401
