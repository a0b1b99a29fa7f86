"""A module that raises on import: booting workers from it must fail fast with one error line."""

raise RuntimeError("proc_broken exploded on import")
