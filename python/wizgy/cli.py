"""The ``wizgy`` console script: hands the command line to the native entry point."""

from __future__ import annotations

import sys
from typing import Optional, Sequence

from wizgy import _native


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Parse ``argv`` (default: ``sys.argv[1:]``), serve, and exit with the server's status."""
    args = list(sys.argv[1:] if argv is None else argv)
    sys.exit(_native.main(["wizgy", *args]))
