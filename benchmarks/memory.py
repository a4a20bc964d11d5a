"""Section memory: peak RSS of one filter worker on big photos, against what --workers auto divides by."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from localgrid import script

from .common import FACES, MB, ROOT, WITH_PROJECT, med, peak_rss, run
from .context import Context
from .programs import PNG_PEAK
from .workloads import make_big_jpeg


def sec_memory(ctx: Context) -> None:
    server = ctx.beanstalkd()
    folder = ctx.tmp / "memory"
    for sub, src in (("big", make_big_jpeg(ctx.tmp / "24mp.jpg")), ("small", FACES / "people/obama/obama_480p.jpg")):
        (folder / sub).mkdir(parents=True, exist_ok=True)
        shutil.copy(src, folder / sub / src.name)
    peaks: dict[str, list[int]] = {"big": [], "small": []}
    for r in range(ctx.sizes.repeats):
        for sub in peaks:
            state = folder / f"state-{sub}-{r}.sqlite"
            run(
                script("queuer.py", folder / sub, "--beanstalkd", server.address, "--state", state, "-q"),
                folder / "log",
            )
            _, rss = peak_rss(
                script("filter.py", "--workers", "1", "--burst", "--beanstalkd", server.address, "-q"),
                folder,
                folder / "log",
            )
            peaks[sub].append(rss)
            server.drain("people")
    rep = ctx.report
    rep.add("memory", "filter process peak RSS, a 480p photo", f"{med(peaks['small']) / MB:.0f} MB")
    big = med(peaks["big"])
    rep.add(
        "memory",
        "filter worker peak RSS, a 24 MP JPEG (4000x6000)",
        f"{big / MB:.0f} MB",
        "<= 1200 MB",
        big <= 1200 * MB,
    )
    from facegrid import filter_pool

    rep.add(
        "memory",
        "filter_pool.WORKER_PEAK_BYTES (the least --workers auto budgets)",
        f"{filter_pool.WORKER_PEAK_BYTES / MB:.0f} MB",
        ">= measured",
        big <= filter_pool.WORKER_PEAK_BYTES,
    )
    png_peak, pixels = png_decode_peak(ctx.tmp / "big-rgba.png", 12000)
    need = filter_pool.worker_need(pixels)
    rep.add(
        "memory",
        "decode of a 12000x12000 RGBA PNG, peak RSS",
        f"{png_peak / MB:.0f} MB",
        f"<= worker_need({pixels}) = {need / MB:.0f} MB",
        png_peak <= need,
    )
    from facegrid.settings import Filter

    rep.add(
        "memory",
        "filter_pool.worker_need(filter.max_pixels) (what --workers auto divides by)",
        f"{filter_pool.worker_need(Filter().max_pixels) / MB:.0f} MB",
    )


def png_decode_peak(path: Path, side: int) -> tuple[int, int]:
    """Peak RSS of imaging.decode on an RGBA PNG of side x side, in a fresh process."""
    if not path.exists():
        from PIL import Image

        arr = np.zeros((side, side, 4), np.uint8)
        arr[::7, ::5] = 200
        Image.fromarray(arr, "RGBA").save(path, compress_level=1)
    out = subprocess.run(
        [sys.executable, PNG_PEAK, str(path)], cwd=ROOT, env=WITH_PROJECT, capture_output=True, text=True, check=True
    )
    return int(out.stdout.split()[-1]), side * side
