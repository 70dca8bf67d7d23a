"""slurm-qpu benchmarks: ``make bench`` (``python -m benchmarks``) writes BENCHMARKS.md.

Every number is a difference or a ratio against a baseline measured in the same run,
interleaved with it where the two share a machine, so that drift (a busy neighbour, a
warm cache) lands on both sides. Nothing here asserts a time: the tests in
tests/unit/test_benchmarks.py check that the measuring code works, not how fast."""
