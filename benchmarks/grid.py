"""The grid run as the scripts (queuer, filters, collector on a private beanstalkd), and what a run stored."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import subprocess
from pathlib import Path

from localgrid import Server, in_netns, script

from .common import ROOT, med, run
from .context import Context


# -- the grid, run as the scripts ------------------------------------------------------
@dataclasses.dataclass
class GridRun:
    starts: list[float]  # processing start of each photo (processed_at - total_ms)
    ends: list[float]  # processed_at
    stored: list[float]  # stored_at
    pids: list[int]
    faces: int
    timings: list[dict] = dataclasses.field(default_factory=list)  # each photo's stage timings

    def stage_ms(self) -> dict[str, float]:
        """Mean milliseconds per photo of each stage."""
        keys = ("decode_ms", "detect_ms", "encode_ms", "annotate_ms", "total_ms")
        return {k: sum(t.get(k, 0) for t in self.timings) / max(1, len(self.timings)) for k in keys}

    def median_total_ms(self) -> float:
        return med([t["total_ms"] for t in self.timings])

    @property
    def n(self) -> int:
        return len(self.ends)

    def per_photo_stored(self) -> float:
        """First photo started -> last result stored, per photo."""
        return (max(self.stored) - min(self.starts)) / self.n

    def filter_rate(self) -> float:
        """Photos per second through the filters: first start -> last processed."""
        return self.n / (max(self.ends) - min(self.starts))

    def rate_per_process(self) -> list[float]:
        out = []
        for pid in sorted(set(self.pids)):
            idx = [i for i, p in enumerate(self.pids) if p == pid]
            span = max(self.ends[i] for i in idx) - min(self.starts[i] for i in idx)
            out.append(len(idx) / span)
        return out


def read_grid(db: Path) -> GridRun:
    conn = sqlite3.connect(str(db))
    try:
        rows = conn.execute(
            "SELECT processed_at, timings, stored_at, filter_pid, face_count FROM images WHERE status != 'error'"
        ).fetchall()
        errors = conn.execute("SELECT count(*) FROM images WHERE status = 'error'").fetchone()[0]
    finally:
        conn.close()
    if errors:
        raise RuntimeError(f"{db}: {errors} photo(s) stored with status error")
    timings = [json.loads(t) for _, t, *_ in rows]
    starts = [r[0] - t["total_ms"] / 1e3 for r, t in zip(rows, timings, strict=False)]
    return GridRun(
        starts, [r[0] for r in rows], [r[2] for r in rows], [r[3] for r in rows], sum(r[4] for r in rows), timings
    )


class Grid:
    """Queue a folder on a private beanstalkd, run filters and the collector, read the database."""

    def __init__(self, ctx: Context, server: Server, name: str):
        self.ctx, self.server, self.name = ctx, server, name
        self.folder = ctx.tmp / name
        self.folder.mkdir(parents=True, exist_ok=True)
        self.runs = 0

    def queue(self, photos: Path) -> None:
        self.runs += 1
        run(
            in_netns(
                self.server.netns,
                script(
                    "queuer.py",
                    photos,
                    "--beanstalkd",
                    self.server.address,
                    "--state",
                    self.folder / f"state{self.runs}.sqlite",
                    "--max-ready",
                    "0",
                    "-q",
                ),
            ),
            self.folder / "queuer.log",
        )

    def collector(self, db: Path) -> list[str]:
        return in_netns(
            self.server.netns, script("collector.py", "--db", db, "--beanstalkd", self.server.address, "--burst", "-q")
        )

    def filters(self, workers: int, address: str | None = None, netns: str | None = None, extra=()) -> list[str]:
        return in_netns(
            netns or self.server.netns,
            script(
                "filter.py",
                "--workers",
                workers,
                "--burst",
                "--beanstalkd",
                address or self.server.address,
                "-q",
                *extra,
            ),
        )

    def together(self, photos: Path, workers: int) -> GridRun:
        """queuer first, then filter and collector at the same time (the overhead run)."""
        self.queue(photos)
        db = self.folder / f"run{self.runs}.db"
        logf = self.folder / "grid.log"
        with open(logf, "ab") as err:
            procs = [
                subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, cwd=ROOT)
                for cmd in (self.collector(db), self.filters(workers))
            ]
            codes = [p.wait(3600) for p in procs]
        if any(codes):
            raise RuntimeError(f"grid run exited {codes}; see {logf}:\n{logf.read_text(errors='replace')[-1500:]}")
        return read_grid(db)

    def filters_then_collector(self, photos: Path, filter_cmds: list[list[str]]) -> GridRun:
        """Filters alone on a full tube, then the collector stores what they made (the scaling run)."""
        self.queue(photos)
        db = self.folder / f"run{self.runs}.db"
        logf = self.folder / "grid.log"
        with open(logf, "ab") as err:
            procs = [subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, cwd=ROOT) for cmd in filter_cmds]
            codes = [p.wait(3600) for p in procs]
        if any(codes):
            raise RuntimeError(f"filters exited {codes}; see {logf}:\n{logf.read_text(errors='replace')[-1500:]}")
        run(self.collector(db), logf)
        return read_grid(db)
