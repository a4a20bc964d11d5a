#!/usr/bin/env python3
"""Measure search precision and recall on the labelled photos, per tolerance and mode.

    .venv/bin/python scripts/calibrate.py [--faces ../shared/faces] [--set filter.upsample=1]

Every labelled photo is encoded with the filter's own pipeline (default
settings). Then, for every person with at least two photos, every single photo
and every pair of photos is used as a target set; each other photo is a
candidate, a true match when the person is in its labels. A photo matches when
its nearest face is within the tolerance of the profile (mode min: the nearest
target face; mode mean: the mean target encoding). Prints one row per
(mode, tolerance) with precision, recall and the counts behind them.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from facegrid import settings as settings_mod  # noqa: E402
from facegrid.faces import FaceEngine  # noqa: E402

TOLERANCES = (0.35, 0.4, 0.45, 0.5, 0.55, 0.6)


def encode_all(engine: FaceEngine, faces: Path) -> dict[str, tuple[set[str], np.ndarray]]:
    out = {}
    with open(faces / "labels.csv", newline="") as f:
        for row in csv.DictReader(f):
            a = engine.analyse((faces / row["path"]).read_bytes())
            enc = np.stack(a.encodings) if a.encodings else np.zeros((0, 128), np.float32)
            out[row["path"]] = (set(row["identities"].split(";")) - {"unknown"}, enc)
    return out


def evaluate(photos, mode: str, tol: float) -> tuple[int, int, int, int]:
    tp = fp = fn = searches = 0
    people = sorted({p for ids, _ in photos.values() for p in ids})
    for person in people:
        own = [k for k, (ids, enc) in photos.items() if ids == {person} and len(enc) == 1]
        for size in (1, 2):
            for target in itertools.combinations(own, size):
                searches += 1
                profile = np.stack([photos[k][1][0] for k in target])
                if mode == "mean":
                    profile = profile.mean(axis=0, keepdims=True)
                for key, (ids, enc) in photos.items():
                    if key in target or not len(enc):
                        continue
                    d = np.linalg.norm(enc[:, None, :] - profile[None, :, :], axis=2).min()
                    hit, truth = d <= tol, person in ids
                    tp += hit and truth
                    fp += hit and not truth
                    fn += truth and not hit
    return tp, fp, fn, searches


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--faces", default=str(Path(__file__).resolve().parent.parent.parent / "shared" / "faces"))
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    args = p.parse_args()
    faces = Path(args.faces)
    if not (faces / "labels.csv").exists():
        print(f"error: {faces}/labels.csv not found; pass --faces with the labelled photos", file=sys.stderr)
        return 2
    conf = settings_mod.load(None, dict(s.split("=", 1) for s in args.set))
    photos = encode_all(FaceEngine(conf.filter), faces)
    print(f"{len(photos)} photos, {sum(len(e) for _, e in photos.values())} faces, "
          f"detect_max_side={conf.filter.detect_max_side} upsample={conf.filter.upsample}")
    print(f"{'mode':<5} {'tolerance':>9} {'precision':>9} {'recall':>7} {'tp':>5} {'fp':>4} {'fn':>4} {'searches':>8}")
    for mode in ("min", "mean"):
        for tol in TOLERANCES:
            tp, fp, fn, n = evaluate(photos, mode, tol)
            precision = tp / (tp + fp) if tp + fp else 1.0
            recall = tp / (tp + fn) if tp + fn else 1.0
            print(f"{mode:<5} {tol:>9.2f} {precision:>9.3f} {recall:>7.3f} {tp:>5} {fp:>4} {fn:>4} {n:>8}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
