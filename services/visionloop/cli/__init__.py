"""The ``visionloop`` command: one module per command group."""
