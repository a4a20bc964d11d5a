#!/usr/bin/env python3
"""Make facegrid/background.npz, the model crowd the look-alike rule counts (facegrid/background.py).

    .venv/bin/python scripts/background.py                  # from lfw-dev, through scripts/evaluate.py's gallery
    .venv/bin/python scripts/background.py --db eval-run/gallery.db --out /tmp/model.npz

Input: a labelled folder (labels.csv: path,identity) whose photos an evaluate.py run
has stored (its gallery database). Only photos with exactly one face are used, at most
--per-person photos of each person, so that a few people do not shape the model.

The model is a mixture. k-means over those faces gives --components centres; a centre
that pools fewer than --min-people different people is merged into its nearest
neighbour until every centre pools at least that many. Each component keeps its share
of the faces, its centre (a mean over 20+ people: no one person's encoding) and one
scale: the root of its faces' mean squared distance to the centre over the trace of
the pooled covariance. Synthetic faces are the centre plus scale x a draw from the
pooled person-shaped covariance: between people (of the people's means, less the
part their photos' own spread explains) plus within a person.
"""

from __future__ import annotations

import argparse
import csv
import sqlite3
import sys
from pathlib import Path

import numpy as np

from facegrid import background

ROOT = Path(__file__).resolve().parent.parent


def read_faces(db: Path, labels: Path, per_person: int) -> tuple[np.ndarray, np.ndarray]:
    """One-face photos' encodings and their people, at most per_person photos each, in path order."""
    with open(labels, newline="", encoding="utf-8") as f:
        who = {r["path"]: r.get("identity", "") for r in csv.DictReader(f)}
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    rows = con.execute(
        "SELECT i.path, f.encoding FROM images i JOIN faces f ON f.image_id = i.id "
        "WHERE (SELECT COUNT(*) FROM faces g WHERE g.image_id = i.id) = 1 ORDER BY i.path"
    ).fetchall()
    x, people, taken = [], [], {}
    for path, enc in rows:
        parts = Path(path).parts
        rel = next(("/".join(parts[i:]) for i in range(len(parts)) if "/".join(parts[i:]) in who), None)
        person = who.get(rel or "", "")
        if not person or taken.get(person, 0) >= per_person:
            continue
        taken[person] = taken.get(person, 0) + 1
        x.append(np.frombuffer(enc, "<f4"))
        people.append(person)
    return np.asarray(x, np.float64), np.asarray(people)


def _assign(x: np.ndarray, centres: np.ndarray) -> np.ndarray:
    d = (x * x).sum(1)[:, None] - 2 * x @ centres.T + (centres * centres).sum(1)[None]
    return np.argmin(d, axis=1)


def components(x: np.ndarray, people: np.ndarray, k: int, min_people: int, seed: int = 3, rounds: int = 30):
    """k-means centres, merged until each pools min_people people; (labels, centres)."""
    rng = np.random.default_rng(seed)
    centres = x[rng.choice(len(x), k, replace=False)]
    for _ in range(rounds):
        labels = _assign(x, centres)
        centres = np.stack([x[labels == j].mean(axis=0) if np.any(labels == j) else centres[j] for j in range(k)])
    while len(centres) > 1:
        labels = _assign(x, centres)
        pooled = np.array([len(set(people[labels == j])) for j in range(len(centres))])
        if pooled.min() >= min_people:
            break
        centres = np.delete(centres, int(np.argmin(pooled)), axis=0)
        labels = _assign(x, centres)
        centres = np.stack([x[labels == j].mean(axis=0) for j in range(len(centres))])
    return _assign(x, centres), centres


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("photos", nargs="?", default=str(ROOT.parent / "shared" / "lfw-dev"), help="labelled folder")
    p.add_argument("--db", default=str(ROOT / "eval-run" / "gallery.db"), help="evaluate.py's gallery database")
    p.add_argument("--out", default=str(ROOT / "facegrid" / "background.npz"))
    p.add_argument("--components", type=int, default=48)
    p.add_argument("--min-people", type=int, default=20)
    p.add_argument("--per-person", type=int, default=10)
    args = p.parse_args(argv)
    labels, db = Path(args.photos) / "labels.csv", Path(args.db)
    for need, fix in ((labels, "pass a labelled folder"), (db, "run scripts/evaluate.py on that folder first")):
        if not need.exists():
            print(f"background.py: {need} not found; {fix}", file=sys.stderr)
            return 2
    x, people = read_faces(db, labels, args.per_person)
    _mean, between, within = background.person_covariances(x, people)
    labels_, centres = components(x, people, args.components, args.min_people)
    total = np.trace(between @ between.T) + np.trace(within @ within.T)
    weights = np.array([np.mean(labels_ == j) for j in range(len(centres))])
    spread = [((x[labels_ == j] - centres[j]) ** 2).sum(1).mean() for j in range(len(centres))]
    scales = np.sqrt(np.array(spread) / total)
    pooled = [len(set(people[labels_ == j])) for j in range(len(centres))]
    np.savez(
        args.out,
        weights=weights,
        centres=centres.astype(np.float32),
        scales=scales,
        between=between,
        within=within,
    )
    print(
        f"background.py: {args.out}: {len(centres)} components from {len(x):,} faces of {len(set(people)):,} people "
        f"(each pools {min(pooled)}-{max(pooled)} people; scales {scales.min():.2f}-{scales.max():.2f})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
