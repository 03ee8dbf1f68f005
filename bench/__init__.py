"""Benchmarks for kscore: `make bench` (or `python -m bench.run`)."""
