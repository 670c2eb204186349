"""Benchmarks of the workers package: ``python -m bench`` (see bench/README.md)."""
