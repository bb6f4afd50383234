"""Benchmarks (docs/BENCHMARKS.md): `make bench` (short) and `make bench-full` (1M reports)."""
