"""What every benchmark section shares: where things are, medians, the log, running a process."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from .programs import RSS_WRAPPER

ROOT = Path(__file__).resolve().parent.parent
# Code run by another interpreter (the dlib-bin venv) finds this checkout's package here.
WITH_PROJECT = {**os.environ, "PYTHONPATH": str(ROOT)}

PY = sys.executable
FACES = Path(os.environ.get("FACEGRID_FACES", ROOT.parent / "shared" / "faces"))
DOCS = ROOT / "docs" / "benchmarks.md"
LFW = Path(os.environ.get("FACEGRID_LFW", ROOT.parent / "shared" / "lfw-dev"))
MB = 1024 * 1024


def med(values: Sequence[float]) -> float:
    return statistics.median(values)


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- processes -----------------------------------------------------------------
def run(cmd: list[str], logfile: Path, timeout: float = 3600) -> float:
    """Run to completion; returns wall seconds. Raises with the log's tail on failure."""
    t0 = time.perf_counter()
    with open(logfile, "ab") as err:
        proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=err, timeout=timeout, cwd=ROOT)
    took = time.perf_counter() - t0
    if proc.returncode not in (0, 1):
        raise RuntimeError(
            f"{' '.join(cmd[:4])} ... exited {proc.returncode}; see {logfile}:\n"
            + logfile.read_text(errors="replace")[-1500:]
        )
    return took


def peak_rss(cmd: list[str], folder: Path, logfile: Path) -> tuple[float, int]:
    """Wall seconds and peak RSS (bytes) of cmd and every descendant it waited for."""
    out = folder / f"rss-{time.monotonic_ns()}.txt"
    took = run([PY, RSS_WRAPPER, str(out), *cmd], logfile)
    return took, int(out.read_text())
