"""The detector: inference for robots."""
