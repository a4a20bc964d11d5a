#!/usr/bin/env python3
"""scripts/bench.py: throughput and scale of the grid, measured against the limit.

Every figure printed is a median over repeats; every comparison is a ratio of
two figures measured side by side in this run. Sections (--only NAME,NAME):

  defaults   default settings vs face_recognition's own (full size, upsample 1):
             same faces on the labelled photos, and how much faster; JPEG decoding
  overhead   the grid (queuer, 1 filter worker, collector, private beanstalkd) vs a
             bare detect+encode loop in one process on the same photos
  scaling    2 filter processes vs 1 (and in separate network namespaces over veth)
  collector  beanstalkd + one collector fed with realistic stand-in results
  memory     peak RSS of one filter worker on a 24-megapixel JPEG
  search     1,000,000 stored faces: index build, warm query, search.py end to end
  cli        face_recognition's command-line tool vs search.py on the same folders
  video      only with --only video: a generated 10-minute 1080p video (labelled photos
             panning, a new one every 20 s): the queuer's decode rate and the filter
             host's throughput (2 workers) as x real time, and the queuer's peak RSS
             on a 1-minute and the 10-minute video; --json top-level keys video_*
  scale      only with --only scale: --scale-faces stored faces (10,000,000), warm and
             shell search, index update after 10,000 new faces, --people on 1,000,000;
             with --json its figures are also top-level keys (faces, search_warm_ms, ...)
  growth     only with --only growth: store stand-in results (2 faces, a ~30 KB annotated
             copy) with store.store_results until --growth-photos photos (1,000,000):
             size per photo, store rate at the start and the end, WAL size, the
             slowest commits (checkpoints), index update time; the database is deleted
  stuck      only with --only stuck: benchmarks/stuck.py, the stuck-job watcher's
             commands a second and seconds to copy back a frozen host's job
  live       only with --only live: benchmarks/live.py, a live grid's alert latency and the
             alert checks' cost
  registry   only with --only registry: benchmarks/registry.py, a people registry update of 10,000
             new faces on 1,000,000
  web        only with --only web: benchmarks/web.py, facegrid web's API search at 1,000,000 faces and
             its results page of 200 matches in headless Chromium

Everything runs in a temporary folder with a private beanstalkd (-z, -b); the
user's files and any running grid are never touched. Results go to stdout;
docs/benchmarks.md is rewritten only with --write-docs. Each section is a module of
benchmarks/ (benchmarks/__init__.py lists them).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's benchmarks/ and facegrid/

import benchmarks  # noqa: E402
from benchmarks.common import DOCS, FACES, ROOT, log  # noqa: E402
from benchmarks.context import FULL, QUICK, Context  # noqa: E402
from benchmarks.report import Report  # noqa: E402


def conditions(ctx: Context, started: float, load_before: tuple) -> str:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError, StopIteration), open("/proc/cpuinfo") as info:
        cpu = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    load_after = os.getloadavg()
    return (
        f"Conditions: {ctx.cores} cores ({cpu}), {platform.system()} {platform.release()}, Python "
        f"{platform.python_version()}; load average {load_before[0]:.1f} before, {load_after[0]:.1f} after; "
        f"{(time.time() - started) / 60:.0f} min; sizes {dataclasses.asdict(ctx.sizes)}; "
        f"{time.strftime('%Y-%m-%d %H:%M')}."
    )


def write_docs(markdown: str) -> None:
    begin, end = "<!-- bench:begin -->", "<!-- bench:end -->"
    text = DOCS.read_text() if DOCS.exists() else f"# Benchmarks\n\n{begin}\n{end}\n"
    if begin not in text or end not in text:
        text += f"\n{begin}\n{end}\n"
    head, rest = text.split(begin, 1)
    tail = rest.split(end, 1)[1]
    DOCS.write_text(f"{head}{begin}\n{markdown}\n{end}{tail}")
    log(f"wrote the results between the bench markers in {DOCS}")


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench.py",
        description=__doc__.split("\n\n")[0],
        epilog="sections: " + ", ".join(benchmarks.SECTIONS),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help="small sizes: a smoke run in about two minutes")
    p.add_argument("--only", metavar="NAME[,NAME]", help="run only these sections")
    p.add_argument("--repeats", type=int, metavar="N", help="repeats per measurement (median is printed)")
    p.add_argument("--photos", type=int, metavar="N", help="jobs in the replicated workload")
    p.add_argument("--faces", type=int, metavar="N", help="synthetic faces in the search store")
    p.add_argument(
        "--scale-faces",
        type=int,
        default=10_000_000,
        metavar="N",
        help="synthetic faces in the scale section's store (default 10,000,000)",
    )
    p.add_argument(
        "--growth-photos",
        type=int,
        default=1_000_000,
        metavar="N",
        help="photos the growth section stores (default 1,000,000)",
    )
    p.add_argument(
        "--lfw", type=int, metavar="N", help="LFW photos in the detection section (default 300; --quick: 60)"
    )
    p.add_argument("--json", action="store_true", help="end with one JSON object of every figure (last line)")
    p.add_argument("--scale-workers", type=int, default=2, metavar="N", help="filter processes to compare with 1")
    p.add_argument("--tmp", metavar="DIR", help="where to make the temporary folder (default: the system's)")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, databases)")
    p.add_argument("--write-docs", action="store_true", help=f"write the table into {DOCS.relative_to(ROOT)}")
    args = p.parse_args(argv)
    if args.lfw is None:
        args.lfw = 60 if args.quick else 300
    args.sections = benchmarks.DEFAULT_SECTIONS if not args.only else tuple(s.strip() for s in args.only.split(","))
    bad = [s for s in args.sections if s not in benchmarks.SECTIONS]
    if bad:
        p.error(f"--only {bad[0]!r}: not a section; use one or more of {', '.join(benchmarks.SECTIONS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    if not (FACES / "labels.csv").exists():
        print(
            f"bench.py: labelled photos not found at {FACES}; put shared/faces beside the repository "
            "or set FACEGRID_FACES",
            file=sys.stderr,
        )
        return 2
    sizes = dataclasses.replace(
        QUICK if args.quick else FULL,
        **{k: v for k, v in (("repeats", args.repeats), ("photos", args.photos), ("faces", args.faces)) if v},
    )
    report = Report(argv)
    ctx = Context(args, sizes, report)
    started, load_before = time.time(), os.getloadavg()
    failed = []
    try:
        for name in args.sections:
            log(f"section {name}")
            print(f"[{name}]", flush=True)
            try:
                rows = benchmarks.runner(name)(ctx)
                for measure, value in (rows or {}).items():
                    value, target, ok = value if isinstance(value, tuple) else (value, "", None)
                    report.add(name, measure, str(value), target, ok)
            except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
                failed.append(name)
                report.skip(name, "section failed", f"{type(exc).__name__}: {str(exc)[:300]}")
    finally:
        ctx.close()
    cond = conditions(ctx, started, load_before)
    print()
    print(report.table())
    print(cond)
    if args.write_docs:
        write_docs(report.markdown(cond))
    if args.json:
        print(json.dumps({**report.figures(cond), **ctx.keys}))
    return 1 if failed or any(r.verdict == "FAIL" for r in report.rows) else 0


if __name__ == "__main__":
    sys.exit(main())
