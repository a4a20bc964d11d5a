#!/usr/bin/env python3
"""filter.py: detect and encode faces for jobs on the images tube (see --help)."""

import sys

from facegrid import cli
from facegrid.commands.filter import EPILOG, main

__all__ = ["EPILOG", "main"]

if __name__ == "__main__":
    sys.exit(cli.run(main))
