"""The docs that are generated from code stay true to it."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _gen_options():
    path = ROOT / "scripts" / "gen_options.py"
    spec = importlib.util.spec_from_file_location("gen_options", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_options_doc_matches_the_current_help_text():
    gen = _gen_options()
    doc = (ROOT / "docs" / "options.md").read_text()
    expected = gen.render(doc, gen.help_text(), gen.keys_table())
    assert expected == doc, "docs/options.md is stale: run `make docs`"
