"""Development tools for tests, benchmarks and the demo: test servers, Triton, synthetic data."""
