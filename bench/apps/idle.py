"""idle: the hello app under load while 5,000 idle keep-alive connections stay open."""

from hello import app  # noqa: F401
