"""An app whose own import of a dependency fails: the traceback must show which line."""

import wizgy_no_such_dependency  # noqa: F401

app = None
