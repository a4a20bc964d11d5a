"""The context every section is given: the flags, the sizes, the table, a temporary folder, the shared
beanstalkd and engine, and figures the sections pass on to each other."""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import tempfile
from pathlib import Path

from localgrid import Server

from facegrid import settings as settings_mod

from .common import log
from .report import Report
from .workloads import make_workload


@dataclasses.dataclass
class Sizes:
    photos: int  # jobs in the replicated workload
    repeats: int
    faces: int  # stored faces for the search section
    labelled_step: int  # every n-th labelled photo for the defaults and cli sections
    results: int  # stand-in results for the collector section


FULL = Sizes(photos=160, repeats=3, faces=1_000_000, labelled_step=1, results=4000)
QUICK = Sizes(photos=10, repeats=2, faces=50_000, labelled_step=4, results=300)


class Context:
    def __init__(self, args: argparse.Namespace, sizes: Sizes, report: Report):
        self.args, self.sizes, self.report = args, sizes, report
        self.tmp = Path(tempfile.mkdtemp(prefix="facegrid-bench-", dir=args.tmp))
        self.settings = settings_mod.load()
        self.cores = len(os.sched_getaffinity(0))
        self.host_rate: tuple[float, str] | None = None  # photos/s of one filter host, and where from
        self._engine = None
        self._workload: Path | None = None
        self.server: Server | None = None
        self.keys: dict = {}  # figures also given at the JSON's top level (the scale section's)

    def engine(self):
        if self._engine is None:
            from facegrid.faces import FaceEngine

            self._engine = FaceEngine(self.settings.filter)
        return self._engine

    def workload(self) -> Path:
        if self._workload is None:
            self._workload = self.tmp / "workload"
            log(f"making {self.sizes.photos} altered copies of the labelled photos in {self._workload}")
            make_workload(self._workload, self.sizes.photos)
        return self._workload

    def beanstalkd(self) -> Server:
        if self.server is None:
            self.server = Server(self.tmp / "binlog").start()
        return self.server

    def close(self) -> None:
        if self.server:
            self.server.stop()
        if not self.args.keep:
            shutil.rmtree(self.tmp, ignore_errors=True)
        else:
            log(f"kept {self.tmp}")
