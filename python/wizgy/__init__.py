"""wizgy: a fast, strict WSGI server written in Rust.

Run it from the command line (``wizgy module:app``) or from Python with :func:`serve`.
"""

from __future__ import annotations

from typing import Any, Callable

from wizgy import _native

__all__ = ["serve", "__version__"]

__version__: str = _native.__version__


def _to_argv(options: dict[str, Any]) -> list[str]:
    """Turn ``serve()`` keyword arguments into the command line's own flags.

    The options are declared once, in the Rust CLI; ``serve(threads=4)`` means exactly
    ``--threads 4``. A list repeats the flag, ``True`` sets a switch, ``False``/``None`` omit it.
    """
    argv: list[str] = []
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        values = value if isinstance(value, (list, tuple)) else [value]
        for item in values:
            if item is None or item is False:
                continue
            if item is True:
                argv.append(flag)
            else:
                argv.extend([flag, str(item)])
    return argv


def serve(app: Callable[..., Any], **options: Any) -> None:
    """Serve the WSGI callable ``app`` until SIGINT or SIGTERM.

    Keyword arguments are the command-line options with ``_`` for ``-``, for example
    ``serve(app, bind="127.0.0.1:8000", threads=8, access_log="-")``. With one worker (the
    default) the app is served in this process; with ``workers=N`` the calling process becomes
    the supervisor and forks N workers that inherit ``app`` (as with ``--preload``).
    Raises ``ValueError`` for a bad option and ``OSError`` when a listener cannot be bound.
    """
    _native.serve(app, ["wizgy", *_to_argv(options)])
