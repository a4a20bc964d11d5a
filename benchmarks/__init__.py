"""scripts/bench.py's sections, one module each, and the workloads they share.

A section is a function that takes the Context (context.py: ctx.args holds the flags,
ctx.report the table) and adds rows to ctx.report; it may instead return
{measure: value}, which bench.py adds as rows of the section. To add a section,
write benchmarks/NAME.py and add one line to SECTIONS: "NAME": "benchmarks.NAME:run".

Shared: common.py (paths, medians, the log, running a process), context.py,
report.py (the table), workloads.py (photos), faces.py (stored faces), grid.py
(the grid run as the scripts), programs/ (what runs in a process of its own).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

# The private grid (tests/localgrid.py) and the tests' builders (tests/factories.py) are development
# code beside the tests, not part of the installed package.
TESTS = str(Path(__file__).resolve().parent.parent / "tests")
if TESTS not in sys.path:
    sys.path.insert(0, TESTS)

SECTIONS: dict[str, str] = {
    "encoder": "benchmarks.filtering:sec_encoder",
    "defaults": "benchmarks.filtering:sec_defaults",
    "camera": "benchmarks.filtering:sec_camera",
    "detection": "benchmarks.detection:sec_detection",
    "overhead": "benchmarks.overhead:sec_overhead",
    "scaling": "benchmarks.overhead:sec_scaling",
    "collector": "benchmarks.collector:sec_collector",
    "envelope": "benchmarks.collector:sec_envelope",
    "memory": "benchmarks.memory:sec_memory",
    "search": "benchmarks.search:sec_search",
    "cli": "benchmarks.search:sec_cli",
    "tracks": "benchmarks.video:sec_tracks",
    "scale": "benchmarks.scale:sec_scale",
    "video": "benchmarks.video:sec_video",
    "growth": "benchmarks.growth:sec_growth",
}
# video (10 minutes of 1080p), scale (10,000,000 faces) and growth (1,000,000 photos) run only when asked
ASKED_ONLY = frozenset({"scale", "video", "growth"})
DEFAULT_SECTIONS = tuple(name for name in SECTIONS if name not in ASKED_ONLY)


def runner(name: str) -> Callable[[Any], dict | None]:
    """The function of section name, its module imported only now (a section's imports stay its own)."""
    module, func = SECTIONS[name].split(":")
    return getattr(importlib.import_module(module), func)
