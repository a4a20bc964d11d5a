#!/usr/bin/env python3
"""queuer.py: put one job per photo, and per sampled video frame, on the images tube (see --help)."""

import sys

from facegrid import cli
from facegrid.commands.queue import EPILOG, main

__all__ = ["EPILOG", "main"]

if __name__ == "__main__":
    sys.exit(cli.run(main))
