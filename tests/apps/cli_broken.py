"""A module that fails on import: loading ``cli_broken:app`` must be a one-line error."""

raise RuntimeError("cli_broken exploded on import")
