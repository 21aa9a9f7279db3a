"""What the tests start and stop: an image origin, the service's processes, a Redis of a
test's own, an S3-compatible store. Fixtures (tests/conftest.py) and the benchmark use
these; each start waits for readiness with a deadline, and each has its stop."""
