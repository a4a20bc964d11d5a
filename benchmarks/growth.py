"""Section growth (only with --only growth): storing results until a million photos, and what it costs along the way."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import factories
import numpy as np
from PIL import Image, ImageOps

from facegrid import imaging, store

from .collector import standin_template
from .common import FACES, MB, log, med
from .context import Context

GROWTH_BATCH = 200  # results per transaction, as one collector batch
GROWTH_STEPS = 10  # measuring points along the way


def growth_annotated(target: int = 30_000) -> bytes:
    """A stand-in annotated JPEG of about target bytes (a real photo, grain added, quality lowered to fit)."""
    img = ImageOps.exif_transpose(Image.open(FACES / "groups/obama_and_biden.jpg")).convert("RGB")
    img.thumbnail((800, 800))
    rgb = np.asarray(img)
    rgb = np.clip(rgb.astype(np.int16) + np.random.default_rng(2).integers(-6, 7, rgb.shape), 0, 255).astype(np.uint8)
    quality, jpeg = 95, imaging.jpeg(rgb, 95)
    while len(jpeg) > target and quality > 20:
        quality -= 5
        jpeg = imaging.jpeg(rgb, quality)
    return jpeg


def sec_growth(ctx: Context) -> None:
    """Store results as the collector does until the database holds --growth-photos photos' rows.

    Each stand-in result has 2 faces (random encodings, 3 KB crops) and one annotated copy of
    about 30 KB (a real 140 KB copy would need 140 GB per million photos: the disk is shared).
    At GROWTH_STEPS points: the store rate over the last stretch, the WAL's size, the slowest
    commits (an automatic checkpoint runs inside the commit that crosses 1,000 WAL pages), and
    the time to bring the search index up to date. The database is deleted at the end.
    """
    from facegrid import index

    total = ctx.args.growth_photos
    folder = ctx.tmp / "growth"
    folder.mkdir(parents=True, exist_ok=True)
    db_path = folder / "growth.db"
    annotated = growth_annotated()
    crop = standin_template()["crops"][0]
    rng = np.random.default_rng(11)
    db = store.open_db(db_path)
    step = max(GROWTH_BATCH, total // GROWTH_STEPS // GROWTH_BATCH * GROWTH_BATCH)
    points, done, commits_all = [], 0, []
    try:
        while done < total:
            commits, start, t0 = [], done, time.perf_counter()
            end = min(total, done + step)
            while done < end:
                k = min(GROWTH_BATCH, end - done)
                enc = rng.normal(0, 0.12, (k, 2, 128)).astype(np.float32)
                batch = [
                    factories.result(
                        f"growth-{done + i}",
                        path=f"/archive/{(done + i) // 1000}/{done + i}.jpg",
                        host="growth",
                        size=4_000_000,
                        width=4000,
                        height=3000,
                        faces=factories.faces(enc[i], (100, 300, 300, 100), crop),
                        annotated=annotated,
                    )
                    for i in range(k)
                ]
                c0 = time.perf_counter()
                store.store_results(db, batch)
                commits.append(time.perf_counter() - c0)
                done += k
            stretch = time.perf_counter() - t0
            wal = Path(str(db_path) + "-wal")
            wal_mb = wal.stat().st_size / MB if wal.exists() else 0.0
            u0 = time.perf_counter()
            index.load(db, db_path)
            update_s = time.perf_counter() - u0
            disk = db_path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)
            points.append(
                {
                    "photos": done,
                    "per_s": (done - start) / stretch,
                    "commit_med_ms": med(commits) * 1e3,
                    "commit_max_ms": max(commits) * 1e3,
                    "wal_mb": wal_mb,
                    "index_s": update_s,
                    "disk_gb": disk / 1e9,
                }
            )
            commits_all += commits
            p = points[-1]
            log(
                f"growth: {done:,} photos, {p['per_s']:.0f}/s, commit median {p['commit_med_ms']:.0f} ms, "
                f"slowest {p['commit_max_ms']:.0f} ms, WAL {wal_mb:.1f} MB, index update {update_s:.2f} s, "
                f"{p['disk_gb']:.2f} GB"
            )
        per_photo = (db_path.stat().st_size) / done
    finally:
        db.conn.close()
        for path in folder.glob("growth.db*"):
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    first, last = points[0], points[-1]
    extra = 140 * 1024 - len(annotated)
    rep = ctx.report
    rep.add("growth", "photos stored (2 faces each, stand-in results)", f"{done:,}", ">= 1,000,000", done >= 1_000_000)
    rep.add(
        "growth",
        f"size on disk per photo (annotated copy {len(annotated) / 1024:.0f} KB)",
        f"{per_photo / 1024:.1f} KB",
    )
    rep.add(
        "growth",
        "size per million photos with a 140 KB annotated copy (extrapolated)",
        f"{(per_photo + extra) * 1e6 / 1e9:.0f} GB",
    )
    rep.add("growth", f"store rate, first {first['photos']:,} photos", f"{first['per_s']:.0f} photos/s")
    rep.add("growth", f"store rate, last stretch to {last['photos']:,} photos", f"{last['per_s']:.0f} photos/s")
    rep.add("growth", "WAL size, largest seen at a measuring point", f"{max(p['wal_mb'] for p in points):.1f} MB")
    rep.add(
        "growth",
        f"commit of {GROWTH_BATCH} results: median / slowest (checkpoints run in commits)",
        f"{med(commits_all) * 1e3:.0f} / {max(commits_all) * 1e3:.0f} ms",
    )
    rep.add(
        "growth",
        f"index update after {step:,} photos ({2 * step:,} faces): first / last",
        f"{first['index_s']:.2f} / {last['index_s']:.2f} s",
    )
    ctx.keys.update({"growth_points": points, "growth_photos": done, "growth_bytes_per_photo": round(per_photo)})
