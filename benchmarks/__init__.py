"""scripts/bench.py's sections, one module each, and the workloads they share.

A section is a function that takes the Context (context.py: ctx.args holds the flags,
ctx.report the table) and adds rows to ctx.report, or returns {measure: value}, which
bench.py adds as rows of the section (a value may be (value, target, ok) to give the row
a target and a verdict). To add a section, write benchmarks/NAME.py and add one line to
SECTIONS: "NAME": "benchmarks.NAME:function", or just "benchmarks.NAME" for a module whose
run(args) takes the parsed flags and returns the rows.

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
    "targets": "benchmarks.targets:sec_targets",
    "tracks": "benchmarks.video:sec_tracks",
    "scale": "benchmarks.scale:sec_scale",
    "video": "benchmarks.video:sec_video",
    "growth": "benchmarks.growth:sec_growth",
    "stuck": "benchmarks:stuck_section",
    "live": "benchmarks.live",
    "registry": "benchmarks.registry",
    "web": "benchmarks.web",
}
# video (10 minutes of 1080p), scale (10,000,000 faces), growth (1,000,000 photos), stuck, live,
# registry and web run only when asked
ASKED_ONLY = frozenset({"scale", "video", "growth", "stuck", "live", "registry", "web"})
DEFAULT_SECTIONS = tuple(name for name in SECTIONS if name not in ASKED_ONLY)


def runner(name: str) -> Callable[[Any], dict | None]:
    """The function of section name, its module imported only now (a section's imports stay its own)."""
    module, _, func = SECTIONS[name].partition(":")
    if not func:  # a module with run(args)
        return lambda ctx: importlib.import_module(module).run(ctx.args)
    return getattr(importlib.import_module(module), func)


def stuck_section(ctx: Any) -> dict:
    """benchmarks/stuck.py, with its own flags (a shorter run under --quick); its figures also go to
    the JSON's top level as stuck_*."""
    stuck = importlib.import_module("benchmarks.stuck")
    figures = stuck.run(stuck.parse(["--seconds", "20" if ctx.args.quick else "60"]))
    ctx.keys.update({f"stuck_{key}": value for key, value in figures.items()})
    return figures
