"""Benchmark sections of scripts/bench.py, one module each (run(args) -> dict of figures)."""
