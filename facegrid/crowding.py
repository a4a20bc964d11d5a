"""How crowded a collection's face space typically is: the median d_k of its own faces.

The look-alike rule (scoring.lookalike_tolerance) tightens a search more where its
profile's k-th distinct look-alike is nearer than is usual *in this collection*. A
rule on the absolute d_k would tighten every search of a large collection, where all
d_k shrink; relative to the collection's own median it stays the same as it grows.

The median is measured on SAMPLES live stored faces (LARGE_SAMPLES in a large collection),
picked by their content (a hash of each face's squared norm, which the index keeps beside
its vectors), so the same faces give the same median whatever order the collector stored
them in; each is taken as a one-photo target, with the model crowd counted as a search counts it, and
kept in the index folder until the collection has grown or shrunk by STALE.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path

import numpy as np

from . import background, scoring

log = logging.getLogger("facegrid.search")

SAMPLES = 100  # stored faces measured ...
LARGE, LARGE_SAMPLES = 100_000, 20  # ... and from this many faces on, where each costs a scan of the short codes:
# the median of 20 d_k moves the tolerance by about 1 % (their spread is about 0.04), and the first search after a
# change stays within the shell search's budget (docs/benchmarks.md, search)
STALE = 0.1  # a kept median is used until the number of faces moves by more than this share
NAME = "typical.json"
FAR = 1.0  # how far out a sampled face's look-alikes are looked for


def typical(idx, params: scoring.Params, cache: Path | None = None) -> float:
    """The collection's median d_k (0, unknown, when most faces have fewer than k distinct look-alikes)."""
    n = len(idx)
    if n == 0 or params.lookalike_count <= 0:
        return 0.0
    key = {
        "k": params.lookalike_count,
        "spread": params.lookalike_spread,
        "background": params.background,
        "pick": "content",
    }
    kept = _read(cache, key, n)
    if kept is not None:
        return kept
    chosen = sample(idx, SAMPLES if n < LARGE else LARGE_SAMPLES)
    if len(chosen) == 0:
        return 0.0
    rows = np.asarray(idx.vectors[chosen], dtype=np.float32)
    plain = dataclasses.replace(params, typical=0.0)
    crowd = background.fill(n, params.background)
    far = max(scoring.radius(plain), FAR)  # a typical d_k can lie beyond any one search's radius
    found = [_dk(idx, row[None, :], crowd, params, far) for row in rows]
    value = float(np.median(found))  # beyond the far radius counts as inf: the median stays exact
    value = value if np.isfinite(value) else 0.0  # most faces without k look-alikes: nothing to compare with
    _write(cache, key, n, value)
    return value


def sample(idx, size: int) -> np.ndarray:
    """Positions (ascending) of up to size live faces, picked by a hash of their content, not by
    their place in the index (the order they arrived in): about 4 bytes a face read."""
    keys = [_mixed(np.asarray(seg.sqnorms, dtype=np.float32).view(np.uint32)) for seg in idx.segments]
    live = [np.ones(len(seg), bool) if seg.live is None else np.asarray(seg.live, bool) for seg in idx.segments]
    key = np.concatenate(keys) if keys else np.zeros(0, np.uint64)
    alive = np.flatnonzero(np.concatenate(live)) if live else np.zeros(0, np.int64)
    if len(alive) <= size:
        return alive
    return np.sort(alive[np.argpartition(key[alive], size - 1)[:size]])


def _mixed(bits: np.ndarray) -> np.ndarray:
    """A 64-bit mix of each 32-bit value (the splitmix64 finaliser): ranks faces in no order of theirs."""
    x = bits.astype(np.uint64)
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x


def own_tolerances(idx, rows: np.ndarray, params: scoring.Params) -> np.ndarray:
    """Each stored face's own tolerance (scoring.candidate_tolerance): the look-alike rule's, with the
    face as a one-photo search of this collection (the model crowd counted, params.typical as the
    collection's). Its look-alikes are read only as far as they can still tighten it."""
    crowd = background.fill(len(idx), params.background)
    far = scoring.radius(dataclasses.replace(params, candidate_power=0.0))  # d_k beyond: the plain tolerance
    found = [_dk(idx, np.asarray(row, np.float32)[None, :], crowd, params, far) for row in rows]
    return np.array([scoring.lookalike_tolerance(dk, params) for dk in found], dtype=np.float64)


def _dk(idx, target: np.ndarray, crowd: np.ndarray, params: scoring.Params, far: float) -> float:
    """One stored face's d_k as its own one-photo search sees it (the model crowd counted)."""
    crowd_dist = np.linalg.norm(crowd - target, axis=1) if len(crowd) else np.zeros(0, np.float32)

    def dk_of(near) -> float:
        dist, vectors = near.dist, near.rows
        if len(crowd):
            dist, vectors = np.concatenate([dist, crowd_dist]), np.concatenate([vectors, crowd])
        return scoring.kth_distinct(dist, vectors, target, params.lookalike_count, params.lookalike_spread)

    return dk_of(idx.near(target, "mean", far, lambda near, r: dk_of(near) <= r))


def _read(cache: Path | None, key: dict, n: int) -> float | None:
    if cache is None:
        return None
    try:
        kept = json.loads((cache / NAME).read_text())
        if kept["key"] == key and abs(kept["faces"] - n) <= STALE * max(kept["faces"], 1):
            return float(kept["typical"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def _write(cache: Path | None, key: dict, n: int, value: float) -> None:
    """Kept beside the index; a folder that cannot be written only means measuring again next time."""
    if cache is None:
        return
    try:
        tmp = cache / f".{NAME}.{os.getpid()}"
        tmp.write_text(json.dumps({"key": key, "faces": n, "typical": value}))
        os.replace(tmp, cache / NAME)
    except OSError as exc:
        log.debug("%s: not kept (%s)", cache / NAME, exc)
