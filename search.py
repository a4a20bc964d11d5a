#!/usr/bin/env python3
"""search.py: find the person in TARGET_DIR across every stored photo (see --help)."""

import sys

from facegrid import cli
from facegrid.commands.search import EPILOG, main

__all__ = ["EPILOG", "main"]

if __name__ == "__main__":
    sys.exit(cli.run(main))
