"""``fw_flask:app`` wrapped in ``wsgiref.validate.validator``: PEP 3333 checks on both sides.

The validator raises AssertionError (-> 500) or emits ``WSGIWarning`` (printed to stderr, the
error log) when the server or the app breaks the spec. Run: ``wizgy fw_validated:app``.
"""

import warnings
from wsgiref.validate import WSGIWarning, validator

from fw_flask import app as flask_app

# Every WSGIWarning is shown, even repeats from the same line.
warnings.simplefilter("always", WSGIWarning)

app = validator(flask_app)
application = app
