"""Sections of scripts/bench.py kept in modules of their own: each exposes run(args) -> {row: value}
(a value may be (value, target, ok) to give the row a target and a verdict); `--only NAME` runs one."""
