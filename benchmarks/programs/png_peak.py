"""png_peak.py PNG: decode PNG as the filter does (facegrid.imaging.decode) and print this process's
peak RSS in bytes."""

import resource
import sys

from facegrid import imaging

with open(sys.argv[1], "rb") as f:
    data = f.read()
imaging.decode(data, 1024, 180_000_000)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
