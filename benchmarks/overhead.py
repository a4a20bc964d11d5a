"""Sections overhead and scaling: the grid against a bare loop in one process, and 2 filter processes against 1."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import localgrid
import numpy as np
from localgrid import Server
from PIL import Image

from facegrid.errors import UsageError

from .common import log, med
from .context import Context
from .grid import Grid


def bare_loop(ctx: Context, paths: list[Path]) -> float:
    """decode at the working size, detect, encode: the limit one process can reach."""
    engine, f = ctx.engine(), ctx.settings.filter
    side = engine.work_side()
    t0 = time.perf_counter()
    for p in paths:
        img: Image.Image = Image.open(p)
        w, h = img.size
        if side and max(w, h) > side:
            img.draft("RGB", (math.ceil(w * side / max(w, h)), math.ceil(h * side / max(w, h))))
        img = img.convert("RGB")
        if side:
            img.thumbnail((side, side), Image.Resampling.BILINEAR, reducing_gap=2.0)
        rgb = np.asarray(img)
        boxes = engine.face_locations(rgb, f.upsample, f.model)
        engine.encode(rgb, boxes)
    return (time.perf_counter() - t0) / len(paths)


def sec_overhead(ctx: Context) -> None:
    photos = ctx.workload()
    paths = sorted(photos.glob("*.jpg"))
    grid = Grid(ctx, ctx.beanstalkd(), "overhead")
    bare, full = [], []
    for i in range(ctx.sizes.repeats):
        bare.append(bare_loop(ctx, paths))
        g = grid.together(photos, 1)
        full.append(g.per_photo_stored())
        log(f"overhead repeat {i + 1}: bare {bare[-1] * 1e3:.0f} ms, grid {full[-1] * 1e3:.0f} ms per photo")
    rep, n = ctx.report, len(paths)
    rep.add("overhead", f"bare loop, one process, per photo ({n} photos)", f"{med(bare) * 1e3:.0f} ms")
    rep.add("overhead", "grid, 1 filter worker, first start -> last stored, per photo", f"{med(full) * 1e3:.0f} ms")
    rep.add("overhead", "grid over the bare loop, ratio of the medians", f"{(med(full) / med(bare) - 1) * 100:+.1f} %")
    # each repeat runs the bare loop and then the grid back to back: the median of
    # these paired ratios is what the machine's drifting load disturbs least
    extra = med([g / b for g, b in zip(full, bare, strict=False)]) - 1
    rep.add(
        "overhead",
        "grid time over the bare loop, median of paired repeats",
        f"{extra * 100:+.1f} %",
        "<= +5 %",
        extra <= 0.05,
    )
    if ctx.host_rate is None:
        ctx.host_rate = (ctx.cores / med(full), f"{ctx.cores} cores x 1 worker's rate (overhead)")


# -- 3. scaling -----------------------------------------------------------------------
def sec_scaling(ctx: Context) -> None:
    photos = ctx.workload()
    grid = Grid(ctx, ctx.beanstalkd(), "scaling")
    workers = ctx.args.scale_workers
    one, many, per = [], [], []
    for i in range(ctx.sizes.repeats):
        one.append(grid.filters_then_collector(photos, [grid.filters(1)]).filter_rate())
        g = grid.filters_then_collector(photos, [grid.filters(workers)])
        many.append(g.filter_rate())
        per += g.rate_per_process()
        log(f"scaling repeat {i + 1}: 1 worker {one[-1]:.2f}/s, {workers} workers {many[-1]:.2f}/s")
    rep = ctx.report
    rep.add("scaling", "1 filter process: photos/s", f"{med(one):.2f}")
    rep.add("scaling", f"{workers} filter processes: photos/s", f"{med(many):.2f}")
    rep.add("scaling", f"{workers} filter processes: photos/s per process", f"{med(per):.2f}")
    ratio = med(many) / med(one)
    rep.add("scaling", f"{workers} processes / 1 process", f"{ratio:.2f}x", ">= 1.85x", ratio >= 1.85)
    ceiling = med([cpu_ceiling(workers) for _ in range(ctx.sizes.repeats)])
    rep.add("scaling", f"this machine's ceiling: {workers} busy-loop processes / 1", f"{ceiling:.2f}x")
    ctx.host_rate = (med(many), f"{workers} filter processes on this host (scaling)")
    scaling_netns(ctx, photos, med(one))


def spin(n: int) -> float:
    t0 = time.perf_counter()
    x = 0
    for i in range(n):
        x += i * i
    return time.perf_counter() - t0


def cpu_ceiling(workers: int, n: int = 20_000_000) -> float:
    """Throughput of N pure-Python busy loops in N processes over one: what the cores allow."""
    import multiprocessing as mp

    one = spin(n)
    with mp.get_context("fork").Pool(workers) as pool:
        t0 = time.perf_counter()
        pool.map(spin, [n] * workers)
        many = time.perf_counter() - t0
    return workers * one / many


class Netns(localgrid.Namespaces):
    """An arbiter namespace and two filter namespaces, joined by veth pairs.

    Every address used lives inside these namespaces (10.250.N.1 arbiter side,
    10.250.N.2 filter side); the host's own network is not touched.
    """

    def __init__(self):
        super().__init__(f"fgb{os.getpid() % 100000}")

    def __enter__(self) -> Netns:
        try:
            self.arb = self.add("a")
            self.filters = [self.add(f"f{i}") for i in range(2)]
            for i, ns in enumerate(self.filters):
                self.link(self.arb, ns, f"10.250.{i}.1", f"10.250.{i}.2", f"v{i}")
        except BaseException:
            self.close()
            raise
        return self


def scaling_netns(ctx: Context, photos: Path, one_rate: float) -> None:
    rep = ctx.report
    why = localgrid.Namespaces.unavailable()
    if why:
        return rep.skip("scaling", "2 filters in separate network namespaces over veth", why)
    try:
        with Netns() as ns:
            server = Server(ctx.tmp / "netns" / "binlog", netns=ns.arb, listen="0.0.0.0", port=11300).start()
            try:
                grid = Grid(ctx, server, "scaling-netns")
                rates = []
                for _ in range(ctx.sizes.repeats):
                    cmds = [grid.filters(1, f"10.250.{i}.1:11300", f) for i, f in enumerate(ns.filters)]
                    rates.append(grid.filters_then_collector(photos, cmds).filter_rate())
            finally:
                server.stop()
    except (PermissionError, RuntimeError, UsageError) as exc:
        return rep.skip("scaling", "2 filters in separate network namespaces over veth", str(exc)[:200])
    rep.add("scaling", "2 filters, each in its own netns over veth: photos/s", f"{med(rates):.2f}")
    rep.add("scaling", "2 netns filters / 1 process", f"{med(rates) / one_rate:.2f}x")
