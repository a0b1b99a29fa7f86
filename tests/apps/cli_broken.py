"""A module that fails on import: one error line, then the app's traceback."""

raise RuntimeError("cli_broken exploded on import")
