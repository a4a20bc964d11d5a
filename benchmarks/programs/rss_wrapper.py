"""rss_wrapper.py OUT CMD...: run CMD, write the peak RSS (bytes) of it and every descendant it waited
for into OUT, exit with CMD's exit code."""

import resource
import subprocess
import sys

rc = subprocess.call(sys.argv[2:])
with open(sys.argv[1], "w") as out:
    out.write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024))
sys.exit(rc)
