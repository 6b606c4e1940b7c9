"""Fixtures of the benchmark tests: tool modules that ``--tools MODULE:ATTR`` names."""
