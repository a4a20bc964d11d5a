"""A model crowd of faces: synthetic look-alikes that the look-alike rule counts, never returned.

The look-alike rule (scoring.py) tightens a search's tolerance where the collection
holds many faces like the target's. A small collection holds too few faces to show
how crowded face space is around a profile: in a 500-photo gallery the plain
tolerance applied, and strangers from crowded regions (dlib packs some populations'
faces closer together) came back as matches. So a collection with fewer than
`search.background` faces is topped up, for counting only, with synthetic faces
drawn from a model of many people's faces, up to that many in all.

The model (background.npz beside this file, made by scripts/background.py) is a
mixture: each component is the mean of the faces of at least 20 different people,
with its own spread (the pooled person-shaped covariance scaled to that component's
measured spread), so crowded regions of face space get a crowded model too. No
encoding of any one person is in it; docs/search.md says how it was made.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

MODEL = Path(__file__).with_name("background.npz")
SEED = 11  # the same crowd in every process, so a search's answer never depends on the process
ENCODING_DIM = 128


@functools.lru_cache(maxsize=4)
def faces(n: int, model: str = str(MODEL)) -> np.ndarray:
    """n synthetic faces (float32, n x 128), always the same for the same n and model; none without a model."""
    if n <= 0 or not Path(model).exists():
        return np.zeros((0, ENCODING_DIM), np.float32)
    with np.load(model) as z:
        weights, centres, scales = z["weights"], z["centres"], z["scales"]
        between, within = z["between"], z["within"]
    rng = np.random.default_rng(SEED)
    owner = rng.choice(len(weights), size=n, p=weights / weights.sum())
    spread = rng.standard_normal((n, ENCODING_DIM)) @ between.T + rng.standard_normal((n, ENCODING_DIM)) @ within.T
    out = (centres[owner] + scales[owner, None] * spread).astype(np.float32)
    out.flags.writeable = False  # shared by every search of the process (cached)
    return out


def fill(stored: int, wanted: int) -> np.ndarray:
    """The synthetic faces that top a collection of `stored` faces up to `wanted` (none when it holds more)."""
    return faces(max(0, wanted - stored))


def person_covariances(x: np.ndarray, people: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean of the people's means, root of the between-people covariance, root of the within-person
    one) over the people with 2 or more encodings in x (float64 rows, people[i] owning row i)."""
    groups = [np.flatnonzero(people == p) for p in np.unique(people)]
    groups = [g for g in groups if len(g) >= 2]
    means = np.stack([x[g].mean(axis=0) for g in groups])
    within = np.concatenate([x[g] - x[g].mean(axis=0) for g in groups])
    s_within = within.T @ within / (len(within) - len(groups))
    centred = means - means.mean(axis=0)
    # a person's mean of m photos also carries s_within / m: take it out of the between-people part
    s_between = centred.T @ centred / (len(groups) - 1) - s_within * np.mean([1 / len(g) for g in groups])
    return means.mean(axis=0), _root(s_between), _root(s_within)


def _root(cov: np.ndarray) -> np.ndarray:
    """L with L @ L.T = cov (negative eigenvalues from sampling noise set to 0)."""
    w, v = np.linalg.eigh(cov)
    return v * np.sqrt(np.clip(w, 0, None))
