"""Small generated models and scenes for tests, benchmarks and the demo: nothing is downloaded."""
