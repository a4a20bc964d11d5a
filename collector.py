#!/usr/bin/env python3
"""collector.py: store results from the people tube in SQLite (see --help)."""

import sys

from facegrid import cli
from facegrid.commands.collect import EPILOG, main

__all__ = ["EPILOG", "main"]

if __name__ == "__main__":
    sys.exit(cli.run(main))
