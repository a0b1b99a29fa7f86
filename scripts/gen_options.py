"""Regenerates the generated parts of docs/options.md from the one declaration of the options:
the `wizgy --help` text, and the table of variables and config-file keys (from
`wizgy --print-config`, run where no config file is found and with no WIZGY_* variable set).

Run by `make docs`; tests/test_docs.py fails when the file is out of date.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "options.md"
BEGIN = "<!-- BEGIN GENERATED: wizgy --help -->"
BEGIN_KEYS = "<!-- BEGIN GENERATED: variables and keys -->"
END = "<!-- END GENERATED -->"
CLEAN_ENV = {"COLUMNS": "100", "PATH": "/usr/bin:/bin"}


def _wizgy(*args: str) -> str:
    with tempfile.TemporaryDirectory() as empty:
        out = subprocess.run(
            [sys.executable, "-m", "wizgy", *args],
            capture_output=True,
            text=True,
            check=True,
            env=CLEAN_ENV,
            cwd=empty,
        )
    return out.stdout


def help_text() -> str:
    return _wizgy("--help").rstrip() + "\n"


def keys_table() -> str:
    """One row per setting: the key, its variable and its default, from --print-config."""
    rows = ["| Key (`-` or `_`) | Variable | Default |", "| --- | --- | --- |"]
    for line in _wizgy("--print-config").splitlines():
        match = re.match(r"^(?:# )?([a-z0-9-]+)(?: = (.*?)|: not set)\s+# default$", line)
        if not match:
            continue
        key, default = match.group(1), match.group(2)
        variable = "—" if key == "app" else "`WIZGY_" + key.upper().replace("-", "_") + "`"
        shown = f"`{default}`" if default is not None else "not set"
        rows.append(f"| `{key}` | {variable} | {shown} |")
    return "\n".join(rows) + "\n"


def _replace(doc: str, begin: str, body: str) -> str:
    head, _, rest = doc.partition(begin)
    _, _, tail = rest.partition(END)
    return f"{head}{begin}\n{body}{END}{tail}"


def render(doc: str, text: str, table: str) -> str:
    doc = _replace(doc, BEGIN, f"```text\n{text}```\n")
    return _replace(doc, BEGIN_KEYS, table)


if __name__ == "__main__":
    DOC.write_text(render(DOC.read_text(), help_text(), keys_table()))
