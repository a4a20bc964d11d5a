"""The stored-face workloads the search sections share: real encodings, face statistics of lfw-dev,
synthetic person-shaped faces, and a store of them."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np

from facegrid import background, envelope, store
from facegrid import settings as settings_mod

from .common import FACES, LFW, log
from .context import Context
from .workloads import labelled


def real_encodings(ctx: Context) -> dict[str, np.ndarray]:
    engine = ctx.engine()
    out = {}
    for r in labelled():
        a = engine.analyse((FACES / r["path"]).read_bytes())
        for i, e in enumerate(a.encodings):
            out[f"{r['path']}#{i}"] = e
    return out


FACE_STATS_PHOTOS = 2500  # lfw-dev photos (of people with 2 or more) the face statistics are taken from
FACE_STATS_PER_PERSON = 10  # at most this many photos of one person


def face_statistics(ctx: Context, real: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], str]:
    """(statistics, how made) for synthetic faces shaped like real people's.

    From lfw-dev: the mean encoding, the covariance of people's mean encodings
    (between people) and of the encodings around their person's mean (within a
    person), over the photos of the first people with two photos or more (at most
    FACE_STATS_PER_PERSON each, FACE_STATS_PHOTOS in all), each encoded by the
    filter's pipeline (cached in the cache folder). Without lfw-dev: the labelled
    photos' mean and spread per dimension, each dimension drawn on its own (no people).
    """
    if not (LFW / "labels.csv").exists():
        allreal = np.stack(list(real.values()))
        log(f"scale: {LFW} not found: synthetic faces drawn independently in each dimension")
        return {"mean": allreal.mean(axis=0), "spread": allreal.std(axis=0) * 1.25}, "independent per dimension"
    with open(LFW / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    by_person: dict[str, list[str]] = {}
    for r in rows:
        by_person.setdefault(r["identity"], []).append(r["path"])
    paths: list[str] = []
    people_of: list[str] = []
    for person in sorted(by_person):
        mine = by_person[person][:FACE_STATS_PER_PERSON]  # so that a few people do not make the spread
        if len(mine) >= 2 and len(paths) + len(mine) <= FACE_STATS_PHOTOS:
            paths += mine
            people_of += [person] * len(mine)
    key = hashlib.sha256("\n".join(paths).encode()).hexdigest()[:16]
    cache = settings_mod.cache_dir() / f"bench-face-stats-{key}.npz"
    how = f"people shaped like lfw-dev's ({len(paths):,} photos of {len(set(people_of)):,} people)"
    try:
        with np.load(cache) as z:
            return {name: z[name] for name in z.files}, how
    except (OSError, ValueError):
        pass
    log(f"scale: encoding {len(paths):,} lfw-dev photos for the synthetic faces' statistics (cached in {cache})")
    engine = ctx.engine()
    x, who = [], []
    for path, person in zip(paths, people_of, strict=True):
        found = engine.analyse((LFW / path).read_bytes()).encodings
        if len(found) == 1:
            x.append(found[0])
            who.append(person)
    mean, between, within = background.person_covariances(np.asarray(x, dtype=np.float64), np.asarray(who))
    stats = {"mean": mean, "between": between, "within": within}
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, mean=mean, between=between, within=within)
    return stats, how


def synthetic_faces(stats: dict[str, np.ndarray], n: int, seed: int = 11, step: int = 100_000):
    """n synthetic encodings in blocks of step: people (1 + a geometric count of photos each, 2.5 on
    average), each a mean drawn with the between-people covariance and faces around it with the
    within-person one; or, with only a per-dimension spread, each dimension drawn on its own."""
    rng = np.random.default_rng(seed)
    if "spread" in stats:
        for start in range(0, n, step):
            k = min(step, n - start)
            yield (stats["mean"] + rng.standard_normal((k, envelope.ENCODING_DIM)) * stats["spread"]).astype("<f4")
        return
    person, left = None, 0
    for start in range(0, n, step):
        k = min(step, n - start)
        owner = np.empty(k, dtype=np.int64)
        means: list = []
        i = 0
        while i < k:
            if left == 0:
                person = stats["mean"] + stats["between"] @ rng.standard_normal(envelope.ENCODING_DIM)
                left = int(rng.geometric(0.4))
            take = min(left, k - i)
            owner[i : i + take] = len(means)
            means.append(person)
            i, left = i + take, left - take
        noise = rng.standard_normal((k, envelope.ENCODING_DIM)) @ stats["within"].T
        yield (np.asarray(means)[owner] + noise).astype("<f4")


def build_store(db_path: Path, n: int, real: dict[str, np.ndarray], planted: list[str], stats: dict) -> None:
    """n synthetic faces (synthetic_faces), 2 per photo, plus planted real ones."""
    db = store.open_db(db_path)
    conn = db.conn
    conn.execute("PRAGMA synchronous=OFF")
    with conn:
        conn.execute("BEGIN")
        gen = store.next_generation(db)  # every face carries the generation of the batch that wrote it
        start = 0
        for enc in synthetic_faces(stats, n):
            images, faces = [], []
            for j in range(len(enc)):
                i = start + j
                img = hashlib.sha256(f"synthetic-{i // 2}".encode()).hexdigest()
                if i % 2 == 0:
                    images.append((img, f"/photos/synthetic/{i // 2:07d}.jpg", "synthetic", "ok", 2, 4000, 3000))
                faces.append((img, i % 2, 100, 200, 200, 100, enc[j].tobytes(), b"", "hog", gen))
            store.insert_rows(db, images, faces)
            start += len(enc)
        images, faces = [], []
        for key in planted:
            img = hashlib.sha256(f"planted-{key}".encode()).hexdigest()
            images.append((img, f"/photos/planted/{key}", "planted", "ok", 1, 1000, 1000))
            faces.append((img, 0, 100, 200, 200, 100, real[key].astype("<f4").tobytes(), b"", "hog", gen))
        store.insert_rows(db, images, faces)
    conn.close()
