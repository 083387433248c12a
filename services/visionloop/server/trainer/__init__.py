"""The trainer: trains the next model."""
