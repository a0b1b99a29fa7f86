"""Regenerates the option table in docs/options.md from `wizgy --help` (the one declaration).

Run by `make docs`; tests/test_docs.py fails when the file is out of date.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "options.md"
BEGIN = "<!-- BEGIN GENERATED: wizgy --help -->"
END = "<!-- END GENERATED -->"


def help_text() -> str:
    out = subprocess.run(
        [sys.executable, "-m", "wizgy", "--help"],
        capture_output=True,
        text=True,
        check=True,
        env={"COLUMNS": "100", "PATH": "/usr/bin:/bin"},
    )
    return out.stdout.rstrip() + "\n"


def render(doc: str, text: str) -> str:
    head, _, rest = doc.partition(BEGIN)
    _, _, tail = rest.partition(END)
    return f"{head}{BEGIN}\n```text\n{text}```\n{END}{tail}"


if __name__ == "__main__":
    DOC.write_text(render(DOC.read_text(), help_text()))
