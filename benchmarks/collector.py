"""Sections collector and envelope: one collector fed with realistic stand-in results, and the cost of decoding one."""

from __future__ import annotations

import hashlib
import sqlite3
import time
from pathlib import Path

import numpy as np
from localgrid import script
from PIL import Image, ImageOps

from facegrid import envelope, imaging

from .common import FACES, log, med, run
from .context import Context
from .overhead import bare_loop


def standin_template() -> dict:
    """A realistic result: ~150 KB annotated JPEG and 3 faces with crops."""
    img = ImageOps.exif_transpose(Image.open(FACES / "groups/obama_and_biden.jpg")).convert("RGB")
    img.thumbnail((1024, 1024))
    rgb = np.asarray(img)
    noise = np.random.default_rng(1).integers(-6, 7, rgb.shape)
    rgb = np.clip(rgb.astype(np.int16) + noise, 0, 255).astype(np.uint8)  # grain, as in real photos
    quality = 95
    annotated = imaging.jpeg(rgb, quality)
    while len(annotated) > 160_000 and quality > 40:
        quality -= 5
        annotated = imaging.jpeg(rgb, quality)
    crops = [
        imaging.jpeg(imaging.crop(rgb, (40 + 60 * i, 140 + 200 * i, 160 + 60 * i, 40 + 200 * i), 112), 85)
        for i in range(3)
    ]
    return {"annotated": annotated, "crops": crops, "size": rgb.shape}


def standin_bodies(n: int, tpl: dict, seed: int = 3):
    rng = np.random.default_rng(seed)
    for i in range(n):
        sha = hashlib.sha256(f"standin-{seed}-{i}".encode()).hexdigest()
        faces = [
            envelope.Face(box=(10, 60, 60, 10), encoding=rng.normal(0, 0.12, 128).astype(np.float32), crop=c)
            for c in tpl["crops"]
        ]
        now = time.time()
        yield envelope.encode_result(
            envelope.Result(
                id=sha,
                path=f"/photos/standin/{i:07d}.jpg",
                host="standin",
                size=3_000_000,
                mtime=now,
                queued_at=now,
                status="ok",
                width=4000,
                height=3000,
                faces=faces,
                annotated=tpl["annotated"],
                filter={"host": "standin", "pid": 1, "version": "bench"},
                settings={"model": "hog", "upsample": 1, "detect_max_side": 1024},
                timings={"total_ms": 300.0},
                processed_at=now,
            )
        )


def store_rate(db: Path) -> float:
    conn = sqlite3.connect(str(db))
    try:
        stamps = sorted(r[0] for r in conn.execute("SELECT stored_at FROM images"))
    finally:
        conn.close()
    first = stamps.count(stamps[0])  # the first batch ends the clock's start
    return (len(stamps) - first) / (stamps[-1] - stamps[0])


def sec_collector(ctx: Context) -> None:
    import greenstalk

    server = ctx.beanstalkd()
    folder = ctx.tmp / "collector"
    folder.mkdir(exist_ok=True)
    tpl = standin_template()
    n = ctx.sizes.results
    rates: list[float] = []
    small: list[float] = []
    size = 0
    bare_tpl = dict(tpl, annotated=b"")
    for r in range(ctx.sizes.repeats):
        for which, template, out in (("full", tpl, rates), ("small", bare_tpl, small)):
            with greenstalk.Client(("127.0.0.1", server.port), encoding=None, use="people") as c:
                for body in standin_bodies(n, template, seed=r):
                    size = len(body) if which == "full" else size
                    c.put(body)
            db = folder / f"run{r}-{which}.db"
            run(script("collector.py", "--db", db, "--beanstalkd", server.address, "--burst", "-q"), folder / "log")
            out.append(store_rate(db))
        log(f"collector repeat {r + 1}: {rates[-1]:.0f} results/s, {small[-1]:.0f} without annotated copies")
    rep = ctx.report
    rep.add(
        "collector",
        f"stand-in result size (3 faces, annotated {len(tpl['annotated']) // 1024} KB)",
        f"{size / 1024:.0f} KB",
    )
    rep.add(
        "collector",
        f"results stored per second ({n} per repeat, prefilled tube)",
        f"{med(rates):.0f}",
        ">= 1000",
        med(rates) >= 1000,
    )
    rep.add("collector", "results stored per second, same results without the annotated copy", f"{med(small):.0f}")
    if ctx.host_rate is None:
        ctx.host_rate = (
            ctx.cores / bare_loop(ctx, sorted(ctx.workload().glob("*.jpg"))[:12]),
            f"{ctx.cores} cores x the bare loop's rate",
        )
    rate, where = ctx.host_rate
    rep.add("collector", f"one filter host: photos/s ({where})", f"{rate:.2f}")
    rep.add("collector", "filter hosts one collector can serve", f"{med(rates) / rate:.0f}")


# -- envelope -----------------------------------------------------------------------------
def sec_envelope(ctx: Context) -> None:
    """What the checks at the door and the signature cost the collector, per result."""
    tpl = standin_template()
    plain = next(standin_bodies(1, tpl))
    keys = envelope.Keyring([b"0123456789abcdef0123456789abcdef"])
    result = envelope.decode(plain)
    assert isinstance(result, envelope.Result)  # a stand-in result, not a job
    signed = envelope.encode_result(result, keys)
    rep = ctx.report

    def per_call(fn, n: int = 300) -> float:
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        return (time.perf_counter() - t0) / n

    runs: dict[str, list[float]] = {"unsigned": [], "signed": []}
    for _ in range(max(5, ctx.sizes.repeats)):
        runs["unsigned"].append(per_call(lambda: envelope.decode(plain)))
        runs["signed"].append(per_call(lambda: envelope.decode(signed, keys)))
    rep.add(
        "envelope",
        f"decode + checks of a stand-in result ({len(plain) // 1024} KB, 3 faces), unsigned",
        f"{med(runs['unsigned']) * 1e6:.0f} us",
    )
    rep.add("envelope", "the same, signed (HMAC-SHA256 checked first)", f"{med(runs['signed']) * 1e6:.0f} us")
