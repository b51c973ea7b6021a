"""``python -m botlib`` is the ``botlib`` command."""

from botlib.cli import main

main()
