"""The photo workloads the sections share: the labelled photos, altered copies of them, a big JPEG."""

from __future__ import annotations

import csv
import hashlib
import io
import random
from pathlib import Path

from PIL import Image, ImageOps

from .common import FACES


# -- workloads -------------------------------------------------------------------
def labelled(step: int = 1) -> list[dict]:
    with open(FACES / "labels.csv", newline="") as f:
        rows = [dict(r, faces=int(r["faces"])) for r in csv.DictReader(f)]
    return rows[::step]


def make_workload(folder: Path, n: int, seed: int = 7) -> list[Path]:
    """n slightly altered JPEG copies of the labelled photos, every sha256 different."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    sources = [FACES / r["path"] for r in labelled()]
    out, seen = [], set()
    for i in range(n):
        src = sources[i % len(sources)]
        img = ImageOps.exif_transpose(Image.open(src)).convert("RGB")
        w, h = img.size
        dx, dy = rng.randint(0, max(1, w // 50)), rng.randint(0, max(1, h // 50))
        img = img.crop((dx, dy, w - rng.randint(0, max(1, w // 50)), h - rng.randint(0, max(1, h // 50))))
        if (i // len(sources)) % 2:
            img = ImageOps.mirror(img)
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=rng.randint(86, 95))
        data = buf.getvalue()
        sha = hashlib.sha256(data).hexdigest()
        if sha in seen:
            continue
        seen.add(sha)
        path = folder / f"{i:05d}-{src.stem}.jpg"
        path.write_bytes(data)
        out.append(path)
    return out


def make_big_jpeg(path: Path) -> Path:
    """A 24-megapixel (4000x6000) JPEG upscaled from a labelled photo."""
    if not path.exists():
        img = ImageOps.exif_transpose(Image.open(FACES / "people/obama/obama3.jpg")).convert("RGB")
        img = ImageOps.fit(img, (4000, 6000), Image.Resampling.BICUBIC)
        img.save(path, "JPEG", quality=90)
    return path
