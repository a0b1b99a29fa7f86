"""``python -m wizgy`` is the ``wizgy`` command."""

from wizgy.cli import main

main()
