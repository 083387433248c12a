"""``python -m visionloop.cli``: the ``visionloop`` command without its console script."""

from visionloop.cli.main import main

main()
