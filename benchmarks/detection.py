"""Section detection: recall against time of the detector settings, on the labelled photos and LFW canvases."""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import random
import time
from typing import Any

import numpy as np
from PIL import Image, ImageFilter, ImageOps

from facegrid import imaging
from facegrid.faces import same_face

from .common import FACES, LFW, log, med
from .context import Context
from .workloads import labelled

# -- detection: recall against time ----------------------------------------------------
DETECT_CONFIGS = [
    ("hog", 1024, 1),
    ("hog", 1024, 0),
    ("hog", 1536, 0),
    ("hog", 2048, 0),
    ("hog", 640, 1),
    ("hog", 1280, 1),
    ("hog", 3072, 0),
    ("hog", 2048, 1),
]
DEFAULT_DETECT = ("hog", 1024, 1)


def found(truth, boxes) -> int:
    return sum(any(same_face(t, b) for b in boxes) for t in truth)


def make_canvases(engine) -> list[tuple[str, bytes, list]]:
    """Group and single photos scaled down and placed on 12 and 24 MP canvases: camera photos with
    small faces. Truth: each source's full-size, one-upsample HOG boxes, moved and scaled."""
    rng = random.Random(3)
    srcs = [
        "groups/obama_and_biden.jpg",
        "groups/two_people.jpg",
        "groups/kit_with_rose.jpg",
        "people/obama/obama_720p.jpg",
        "people/biden/biden2.jpg",
        "people/rose_leslie/img1.jpg",
    ]
    imgs = {s: ImageOps.exif_transpose(Image.open(FACES / s)).convert("RGB") for s in srcs}
    boxes = {s: engine.face_locations(np.asarray(im), 1, "hog") for s, im in imgs.items()}
    sizes = [(4000, 3000), (6000, 4000), (4000, 3000), (6000, 4000), (3000, 4000), (4000, 3000)]
    out = []
    for ci, (w, h) in enumerate(sizes):
        bg = imgs[srcs[(ci + 3) % len(srcs)]]
        canvas = (
            bg.resize((w // 16, h // 16)).filter(ImageFilter.GaussianBlur(2)).resize((w, h), Image.Resampling.BICUBIC)
        )
        truth = []
        for k, src in enumerate(rng.sample(srcs, 4)):
            img = imgs[src]
            face = float(np.median([b - t for t, _r, b, _left in boxes[src]]))
            sc = [60, 90, 130, 200, 300, 45][(ci + k) % 6] * w / 4000 / face  # face sizes in canvas pixels
            sc = min(sc, (w // 2) / img.width, (h // 2) / img.height)
            piece = img.resize((round(img.width * sc), round(img.height * sc)), Image.Resampling.LANCZOS)
            px = (k % 2) * (w // 2) + rng.randint(0, w // 2 - piece.width)
            py = (k // 2) * (h // 2) + rng.randint(0, h // 2 - piece.height)
            canvas.paste(piece, (px, py))
            truth += [
                (round(t * sc) + py, round(r * sc) + px, round(b * sc) + py, round(left * sc) + px)
                for t, r, b, left in boxes[src]
            ]
        buf = io.BytesIO()
        canvas.save(buf, "JPEG", quality=90)
        out.append((f"canvas{ci}-{w}x{h}", buf.getvalue(), truth))
    return out


def detect_once(engine, data: bytes, model: str, side: int, up: int, reps: int) -> tuple[list, float]:
    """Boxes in original pixels and the best wall time of decode + detect at (side, upsample)."""
    best = math.inf
    for _ in range(reps):
        t0 = time.perf_counter()
        d = imaging.decode(data, side, 1 << 40)
        rects = engine.face_locations(d.rgb, up, model)
        best = min(best, time.perf_counter() - t0)
    return [tuple(round(v / d.scale) for v in b) for b in rects], best


CANDIDATES = ("hog around yuface candidates", 1024, 1)  # filter.proposals = yuface at the defaults


def detect_candidates_once(engine, data: bytes, reps: int) -> tuple[list, float]:
    """As detect_once at the defaults' size and upsampling, with filter.proposals = yuface."""
    from facegrid.faces import SCAN_WHOLE_SIDE

    _, side, up = CANDIDATES
    best = math.inf
    for _ in range(reps):
        t0 = time.perf_counter()
        d = imaging.decode(data, side, 1 << 40)
        if max(d.rgb.shape[:2]) > SCAN_WHOLE_SIDE:
            rects = engine.hog_around_candidates(d.rgb, up)
        else:
            rects = engine.face_locations(d.rgb, up, "hog")
        best = min(best, time.perf_counter() - t0)
    return [tuple(round(v / d.scale) for v in b) for b in rects], best


def lfw_canvases(items: list, per: int = 12) -> list[tuple[str, bytes, None]]:
    """LFW photos scaled to 250, 180, 125 or 90 px and tiled 12 to a 1024x768 canvas (grey between),
    so that the candidate route runs on them: LFW photos themselves are scanned whole."""
    rng = random.Random(5)
    out = []
    for k in range(0, len(items) - per + 1, per):
        canvas = Image.new("RGB", (1024, 768), (128, 128, 128))
        for i, (_, data, _) in enumerate(items[k : k + per]):
            side = (250, 180, 125, 90)[i % 4]
            img = Image.open(io.BytesIO(data)).convert("RGB").resize((side, side), Image.Resampling.BICUBIC)
            x = (i % 4) * 256 + rng.randint(0, 256 - side)
            y = (i // 4) * 256 + rng.randint(0, 256 - side)
            canvas.paste(img, (x, y))
        buf = io.BytesIO()
        canvas.save(buf, "JPEG", quality=92)
        out.append((f"lfw-canvas{k // per}", buf.getvalue(), None))
    return out


def box_agreement(base: list, cand: list) -> tuple[int, int, int, int]:
    """Boxes of the full scan, how many the candidate route gives identically, lost and gained."""
    total = same = lost = gained = 0
    for b0, b1 in zip(base, cand, strict=True):
        s0, s1 = set(b0), set(b1)
        total, same, lost, gained = total + len(s0), same + len(s0 & s1), lost + len(s0 - s1), gained + len(s1 - s0)
    return total, same, lost, gained


def pair_faces(b0: list, b1: list) -> list[tuple]:
    """Each box of b0 with the box of b1 that is the same face (the same box first), if any."""
    pairs = []
    for a in b0:
        same = [b for b in b1 if same_face(a, b)]
        if same:
            pairs.append((a, min(same, key=lambda b: sum(abs(u - v) for u, v in zip(a, b, strict=True)))))
    return pairs


def encoding_agreement(engine, items, base, cand) -> tuple[int, int, int, float]:
    """Faces found both ways: how many encodings are identical, within 0.01, and the largest distance."""
    dists = []
    for (_, data, _), b0, b1 in zip(items, base, cand, strict=True):
        d = imaging.decode(data, 0, 1 << 40)  # boxes are in original pixels
        pairs = pair_faces(b0, b1)
        if pairs:
            e0 = engine.encode(d.rgb, [a for a, _ in pairs])
            e1 = engine.encode(d.rgb, [b for _, b in pairs])
            dists += [float(np.linalg.norm(x - y)) for x, y in zip(e0, e1, strict=True)]
    return len(dists), sum(x == 0 for x in dists), sum(x <= 0.01 for x in dists), max(dists, default=0.0)


def candidate_rows(ctx: Context, name: str, items: list, engine, results: dict) -> None:
    """The candidate route against the full scan at the defaults' size and upsampling: boxes
    identical, lost, gained; encodings of the faces found both ways; decode + detect ms per photo."""
    base, cand = [b for b, _ in results[DEFAULT_DETECT]], [b for b, _ in results[CANDIDATES]]
    total, same, lost, gained = box_agreement(base, cand)
    n_both, identical, _, worst = encoding_agreement(engine, items, base, cand)
    ms = [sum(t for _, t in results[cfg]) / len(items) * 1e3 for cfg in (DEFAULT_DETECT, CANDIDATES)]
    ctx.report.add(
        "detection",
        f"{name} ({len(items)}): candidates vs full scan: boxes identical / lost / gained",
        f"{same}/{total} / {lost} / {gained}",
        "all identical",
        same == total and not gained,
    )
    ctx.report.add(
        "detection",
        f"{name} ({len(items)}): candidates vs full scan: encodings identical / largest distance",
        f"{identical}/{n_both} / {worst:.3f}",
    )
    ctx.report.add(
        "detection",
        f"{name} ({len(items)}): decode + detect ms per photo: full scan / candidates / ratio",
        f"{ms[0]:.0f} / {ms[1]:.0f} / {ms[0] / ms[1]:.2f}x",
    )


def sec_detection(ctx: Context) -> None:
    """Recall of labelled faces against time for sizes and upsampling, on three photo sets."""
    engine, rep = ctx.engine(), ctx.report
    sets: dict[str, list[tuple[str, bytes, Any]]] = {
        "labelled": [(r["path"], (FACES / r["path"]).read_bytes(), None) for r in labelled()]
    }
    if (LFW / "labels.csv").exists():
        with open(LFW / "labels.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        step = max(1, len(rows) // ctx.args.lfw)
        sets["lfw"] = [(r["path"], (LFW / r["path"]).read_bytes(), "centre") for r in rows[::step][: ctx.args.lfw]]
    else:
        log(f"detection: {LFW} not found: the LFW rows are left out")
    sets["camera"] = make_canvases(engine)
    from facegrid.faces import FaceEngine

    cand_engine = FaceEngine(dataclasses.replace(engine.conf, proposals="yuface"))
    if not cand_engine.around:
        raise RuntimeError(f"the candidate route is not set up here: {cand_engine.describe()}")

    if "lfw" in sets:  # the candidate route against the full scan only, no sweep of settings
        canvases = lfw_canvases(sets["lfw"])
        results: dict[tuple, list] = {
            cfg: [fn(data) for _, data, _ in canvases]
            for cfg, fn in (
                (DEFAULT_DETECT, lambda d: detect_once(engine, d, *DEFAULT_DETECT, 2)),
                (CANDIDATES, lambda d: detect_candidates_once(cand_engine, d, 2)),
            )
        }
        candidate_rows(ctx, "lfw on canvases", canvases, engine, results)

    configs = DETECT_CONFIGS if not ctx.args.quick else DETECT_CONFIGS[:4]
    extra = {
        "labelled": [("hog", 0, 1), ("hog", 0, 0)],  # full size: labels.csv's counts come from (0, 1)
        "lfw": [("hog", 1024, 2), ("cnn", 1024, 0), ("cnn", 1024, 1)],
    }  # HOG vs CNN on small photos
    for name, items in sets.items():
        reps = 1 if name == "camera" else 2
        results = {}
        for cfg in configs + extra.get(name, []):
            log(f"detection: {name}: {cfg}")
            results[cfg] = [detect_once(engine, data, *cfg, reps) for _, data, _ in items]
        base = [b for b, _ in results[DEFAULT_DETECT]]
        log(f"detection: {name}: {CANDIDATES}")
        results[CANDIDATES] = [detect_candidates_once(cand_engine, data, reps) for _, data, _ in items]
        candidate_rows(ctx, name, items, engine, results)
        # "upsample only when small": one upsample for photos up to 1024 px, none above
        small = [max(Image.open(io.BytesIO(d)).size) <= 1024 for _, d, _ in items]
        results[("hog", 1024, "only <= 1024 px")] = [
            results[DEFAULT_DETECT][i] if small[i] else results[("hog", 1024, 0)][i] for i in range(len(items))
        ]
        for cfg, per in results.items():
            boxes = [b for b, _ in per]
            ms = sum(t for _, t in per) / len(per) * 1e3
            lost = sum(len(b0) - found(b0, b) for b0, b in zip(base, boxes, strict=False))
            if name == "lfw":
                hit = sum(any(b[0] <= 75 <= b[2] and b[3] <= 75 <= b[1] for b in bx) for bx in boxes)
                total = len(items)
            else:
                truth = [t if t is not None else b0 for (_, _, t), b0 in zip(items, base, strict=False)]
                if name == "labelled":  # labels.csv: full size, one upsample
                    truth = [b for b, _ in results.get(("hog", 0, 1), [])] or truth
                hit, total = sum(found(t, b) for t, b in zip(truth, boxes, strict=False)), sum(len(t) for t in truth)
            model, side, up = cfg
            label = f"{model} {side} px, upsample {up}"
            ok = None if cfg != DEFAULT_DETECT else lost == 0
            rep.add(
                "detection",
                f"{name} ({len(items)}): {label}: found / lost vs defaults / ms",
                f"{hit}/{total} / {lost} / {ms:.0f}",
                "",
                ok,
            )


def timed_set(fn, items) -> tuple[float, list]:
    t0 = time.perf_counter()
    out = [fn(x) for x in items]
    return time.perf_counter() - t0, out


def full_decode(data: bytes, side: int) -> np.ndarray:
    img = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
    if side:
        img.thumbnail((side, side), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return np.asarray(img)


def decode_rows(ctx: Context, datas: list[bytes], what: str) -> None:
    side, maxpx = ctx.engine().work_side(), ctx.settings.filter.max_pixels
    plain, resized, draft = [], [], []
    for _ in range(max(3, ctx.sizes.repeats)):
        plain.append(timed_set(lambda d: full_decode(d, 0), datas)[0])
        resized.append(timed_set(lambda d: full_decode(d, side), datas)[0])
        draft.append(timed_set(lambda d: imaging.decode(d, side, maxpx), datas)[0])
    n = len(datas)
    rep = ctx.report
    rep.add("defaults", f"decode {what}: full size, per photo", f"{med(plain) / n * 1e3:.1f} ms")
    rep.add("defaults", f"decode {what}: full size + resize to {side}", f"{med(resized) / n * 1e3:.1f} ms")
    rep.add("defaults", f"decode {what}: once at {side} with JPEG draft()", f"{med(draft) / n * 1e3:.1f} ms")
    rep.add("defaults", f"decode {what}: (full + resize) / draft", f"{med(resized) / med(draft):.2f}x")
