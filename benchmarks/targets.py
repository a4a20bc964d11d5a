"""Section targets: what search.py's work on a target photo costs beyond the filter's (targets.py).

Side by side in one run, on the same photos: a face encoded from the photo alone and with
its mirror image ([search] target_mirror), and a photo with no face found scanned once
(as the filter does) and by encode_target, which scans it a second time at twice the size.
The issue's budget is 1 s added per target photo.
"""

from __future__ import annotations

import io
import time

import numpy as np

from .common import FACES, log, med
from .context import Context

SIDE = 512  # the largest photo that gets the second scan at the default upsample 1 (targets.RETRY_SIDE)


def _no_face_photo(side: int) -> bytes:
    """A photo with no face in it: a smooth gradient under grain, as a blank wall photographed."""
    from PIL import Image

    rng = np.random.default_rng(5)
    y, x = np.mgrid[0:side, 0:side]
    base = (96 + 64 * np.sin(x / 57.0) * np.cos(y / 43.0))[..., None] + rng.normal(0, 6, (side, side, 3))
    buf = io.BytesIO()
    Image.fromarray(np.clip(base, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _side_by_side(first, second, repeats: int) -> tuple[float, float]:
    """Median seconds of each, the two interleaved so that the machine's load falls on both alike."""
    took: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for fn, into in ((first, took[0]), (second, took[1])):
            t0 = time.perf_counter()
            fn()
            into.append(time.perf_counter() - t0)
    return med(took[0]), med(took[1])


def sec_targets(ctx: Context) -> None:
    from facegrid import targets as targets_mod

    engine, rep, repeats = ctx.engine(), ctx.report, max(9, ctx.sizes.repeats)
    photo = (FACES / "people/obama/obama.jpg").read_bytes()
    blank = _no_face_photo(SIDE)
    engine.analyse(photo)  # models loaded before anything is timed
    alone, mirrored = _side_by_side(
        lambda: targets_mod.encode_target(engine, "t.jpg", photo, mirror=False),
        lambda: targets_mod.encode_target(engine, "t.jpg", photo, mirror=True),
        repeats,
    )
    rep.add(
        "targets",
        "target photo with its mirror image, added time",
        f"{(mirrored - alone) * 1e3:.0f} ms ({mirrored * 1e3:.0f} vs {alone * 1e3:.0f} ms)",
        "<= 1000 ms",
        mirrored - alone <= 1.0,
    )
    target, _why = targets_mod.encode_target(engine, "blank.jpg", blank)
    once, twice = _side_by_side(
        lambda: engine.analyse(blank), lambda: targets_mod.encode_target(engine, "blank.jpg", blank), repeats
    )
    log(f"a {SIDE}-px photo with no face: {'a face found' if target else 'no face found'} by the second scan")
    rep.add(
        "targets",
        f"{SIDE}-px photo with no face, second scan at twice the size, added time",
        f"{(twice - once) * 1e3:.0f} ms ({twice * 1e3:.0f} vs {once * 1e3:.0f} ms)",
        "<= 1000 ms",
        twice - once <= 1.0,
    )
