"""How a stored face is judged against a target profile (docs/search.md).

A single global tolerance fails among look-alikes: a few people's faces sit
close together in the 128-d space, and a tolerance that finds everyone else's
photos lets dozens of strangers through for them. So each search gets its own
tolerance:

    tolerance(q) = min(tolerance, lookalike_ratio x d_k(q) x min(1, d_k(q) / typical)^crowd_power)

d_k(q) is the distance from the profile to its k-th nearest *distinct*
look-alike: walking the stored faces nearest first, a face counts only when it
is at least lookalike_spread away from every target face and from every face
counted before it. So the person's own photos (however many) never count, and
repeated photos of one stranger count once. Where the collection holds many faces
like the target's, d_k is small and the tolerance tightens; where it holds
few, the plain tolerance applies. A collection that grows tightens it as
needed, which keeps precision steady as it grows. typical is the collection's own
median d_k (crowding.py): where a profile's look-alikes crowd closer than is usual
in this collection, strangers come closer still, relative to d_k, so the tolerance
tightens more there. Relative to the collection's median, this does not change as
the collection grows. A small collection's count includes a model crowd
(background.py).

Then a second pass (query expansion): the first pass's most confident matches
join the target photos, and the profile and its tolerance are made again from
them all. It finds photos of the person in looks the target photos lack.

Everything here is pure NumPy over arrays: no database, no models.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

import numpy as np

from .settings import Search

_DEFAULTS = Search()  # the search settings' defaults, the one place they are declared


class Vectors(Protocol):
    """Stored face vectors addressed by row: an array, or index.Vectors over several segments."""

    def __len__(self) -> int: ...

    def __getitem__(self, positions, /) -> np.ndarray: ...


# Precision measured at each normalised score d / tolerance(q) on lfw-dev (6,403
# photos, 443 searches) with the default settings (target mirror, model crowd, crowd factor,
# candidate side, target faces as targets.py picks them, the typical d_k from faces picked by
# content, crowding.sample, passes while the surest matches grow): `scripts/evaluate.py --calibrate`
# prints this table. Upper edges of the score bins and the share of right matches in each
# bin, pooled so that it never rises with the score.
CALIBRATION: tuple[tuple[float, float], ...] = (
    (0.75, 0.996),
    (0.8, 0.99),
    (0.85, 0.967),
    (0.9, 0.959),
    (0.95, 0.932),
    (1.0, 0.78),
    (1.05, 0.272),
    (1.1, 0.066),
    (1.15, 0.018),
    (1.2, 0.002),
    (1.25, 0.0),
)


@dataclasses.dataclass(frozen=True)
class Params:
    """The search's rule, by its settings ([search] in settings.ini; the defaults are settings.Search's,
    declared there once)."""

    tolerance: float = _DEFAULTS.tolerance
    lookalike_count: int = _DEFAULTS.lookalike_count  # k; 0 turns the adaptive tolerance off
    lookalike_spread: float = _DEFAULTS.lookalike_spread
    lookalike_ratio: float = _DEFAULTS.lookalike_ratio
    expand_count: int = _DEFAULTS.expand_count  # query expansion: at most this many confident matches join the profile
    expand_score: float = _DEFAULTS.expand_score  # ... those with a score (distance / tolerance) at most this
    expand_rounds: int = _DEFAULTS.expand_rounds  # passes after the first, while the surest matches grow in number
    background: int = _DEFAULTS.background  # fewer faces than this: topped up with model look-alikes
    crowd_power: float = _DEFAULTS.crowd_power  # d_k below the typical d_k: tighten by (d_k / typical)^this
    typical: float = 0.0  # the collection's typical d_k (facegrid/crowding.py); 0: unknown, no such tightening
    candidate_power: float = _DEFAULTS.candidate_power  # weight of a stored face's own tolerance (0: off)
    candidate_scale: float = _DEFAULTS.candidate_scale  # ... and the scale of the two combined


def _sqdist(rows: np.ndarray, v: np.ndarray) -> np.ndarray:
    diff = rows - v
    return np.einsum("ij,ij->i", diff, diff)


def kth_distinct(
    dist: np.ndarray, vectors: Vectors, seeds: np.ndarray, k: int, spread: float, first: int = 512
) -> float:
    """Distance to the k-th nearest face that is at least `spread` from the seeds and each earlier one.

    dist: distance of every stored face to the profile; vectors: the stored faces
    (row i belongs to dist[i]); seeds: the target encodings. Returns inf when the
    collection has fewer than k such faces.
    """
    n = len(dist)
    if k <= 0 or n == 0:
        return float("inf")
    s2 = spread * spread
    m = first
    while True:
        m = min(m, n)
        near = np.argpartition(dist, m - 1)[:m] if m < n else np.arange(n)
        near = near[np.argsort(dist[near], kind="stable")]
        order = np.argsort(near)  # read the rows in file order, keep them in distance order
        rows = np.asarray(vectors[near[order]], dtype=np.float32)
        x = np.empty_like(rows)
        x[order] = rows
        covered = np.zeros(m, dtype=bool)
        for seed in np.atleast_2d(seeds):
            covered |= _sqdist(x, np.asarray(seed, dtype=np.float32)) < s2
        counted, pos = 0, 0
        while True:
            free = np.flatnonzero(~covered[pos:])
            if not len(free):
                break
            j = pos + int(free[0])
            counted += 1
            if counted == k:
                return float(dist[near[j]])
            covered[j:] |= _sqdist(x[j:], x[j]) < s2
            pos = j + 1
        if m == n:
            return float("inf")
        m *= 4


def lookalike_tolerance(dk: float, p: Params) -> float:
    """The tolerance a k-th distinct look-alike at dk gives: lookalike_ratio x dk, and tighter still
    where dk is below the collection's typical one (a crowded region of face space: there strangers
    come closer than elsewhere, relative to d_k); never above the plain tolerance."""
    tol = p.lookalike_ratio * dk
    if p.crowd_power > 0 and p.typical > 0 and dk < p.typical:
        tol *= (dk / p.typical) ** p.crowd_power
    return min(p.tolerance, tol)


def _plain_from(p: Params) -> float:
    """The smallest d_k from which lookalike_tolerance gives the plain tolerance."""
    if p.lookalike_ratio <= 0:
        return 0.0
    dk = p.tolerance / p.lookalike_ratio
    if p.crowd_power > 0 and p.typical > 0 and dk < p.typical:
        dk = (p.tolerance * p.typical**p.crowd_power / p.lookalike_ratio) ** (1 / (1 + p.crowd_power))
    return dk


# Candidate side: a stored face nearer the profile than this share of the search's tolerance is a
# match whatever its own tolerance (on lfw-dev no face there had one small enough to change that),
# so only the faces between it and widest() need their own look-alikes counted.
CANDIDATE_FLOOR = 0.9


def candidate_side(p: Params) -> bool:
    """Whether a stored face's own tolerance counts: candidate_power > 0 and the look-alike rule on
    (without it every face's own tolerance is the plain one)."""
    return p.candidate_power > 0 and p.lookalike_count > 0


def candidate_tolerance(tol: float, own: np.ndarray | float, p: Params) -> np.ndarray | float:
    """A stored face's tolerance in a search of tolerance tol, where the face's own tolerance (its
    look-alike rule as a one-photo search of this collection, crowding.own_tolerances) is `own`:
    candidate_scale x tol^(1 - candidate_power) x own^candidate_power, at least CANDIDATE_FLOOR x tol.
    A stranger from a crowded region of face space has a small own tolerance and needs to come
    closer; a face with few look-alikes of its own may lie a little farther."""
    if not candidate_side(p):
        return tol if np.isscalar(own) else np.full(np.shape(own), tol)
    joint = p.candidate_scale * tol ** (1 - p.candidate_power) * np.asarray(own) ** p.candidate_power
    return np.maximum(CANDIDATE_FLOOR * tol, joint)


def widest(tol: float, p: Params) -> float:
    """The largest tolerance a stored face can have in a search of tolerance tol (its own one is at
    most the plain tolerance)."""
    return float(max(tol, candidate_tolerance(tol, p.tolerance, p)))


def farthest(tol: float, p: Params, reach: float = 1.0) -> float:
    """How far from the profile a face can lie and still be returned (reach x its own tolerance in
    the search, at most widest) or join the second pass (expand_score x tol)."""
    return max(widest(tol, p) * max(reach, 1.0), tol * p.expand_score)


def needs_own(dist: np.ndarray, tol: float, p: Params, reach: float = 1.0) -> np.ndarray:
    """The faces (by their distance to the profile) whose answer depends on their own tolerance."""
    if not candidate_side(p):
        return np.zeros(len(dist), dtype=bool)
    return (dist > CANDIDATE_FLOOR * tol) & (dist <= widest(tol, p) * max(reach, 1.0))


def search_tolerance(dist: np.ndarray, vectors: Vectors, targets: np.ndarray, p: Params) -> float:
    """This search's tolerance: the plain one, tightened where look-alikes crowd the target."""
    if p.lookalike_count <= 0:
        return p.tolerance
    dk = kth_distinct(dist, vectors, targets, p.lookalike_count, p.lookalike_spread)
    return lookalike_tolerance(dk, p)


def radius(p: Params, reach: float = 1.0) -> float:
    """How far from the profile a stored face can still change a search's answer.

    A match or an expansion face lies within farthest() of the plain tolerance. The
    look-alike rule needs d_k only when it is below tolerance / lookalike_ratio (beyond,
    the plain tolerance applies), and d_k is set by the faces nearer than it. No face farther than the largest of these
    changes the answer; where look-alikes crowd the profile, far fewer do (settled).
    """
    far = farthest(p.tolerance, p, reach)
    if p.lookalike_count > 0 and p.lookalike_ratio > 0:
        far = max(far, _plain_from(p))
    return far


def settled(
    dist: np.ndarray, vectors: Vectors, targets: np.ndarray, p: Params, radius: float, reach: float = 1.0
) -> float | None:
    """The search's tolerance, when the faces within radius of the profile (all of them, and no
    other) settle it and hold every match and expansion face; else None (read farther)."""
    if p.lookalike_count <= 0:
        tol = p.tolerance
    else:
        dk = kth_distinct(dist, vectors, targets, p.lookalike_count, p.lookalike_spread)
        if dk <= radius:  # every face nearer than d_k is here: d_k is exact
            tol = lookalike_tolerance(dk, p)
        elif lookalike_tolerance(radius, p) >= p.tolerance:  # d_k lies beyond: the plain tolerance holds
            tol = p.tolerance
        else:
            return None
    return tol if farthest(tol, p, reach) <= radius else None


def expanded(targets: np.ndarray, dist: np.ndarray, vectors: Vectors, tol: float, p: Params) -> np.ndarray:
    """The targets plus the nearest confident matches of a first pass (query expansion).

    A second pass from this larger set sees more of the person's looks (angles,
    ages, light) than the target photos alone, and finds photos the first missed.
    """
    if p.expand_count <= 0:
        return targets
    sure = np.flatnonzero(dist <= p.expand_score * tol)
    if not len(sure):
        return targets
    sure = sure[np.argsort(dist[sure], kind="stable")][: p.expand_count]
    return np.concatenate([np.atleast_2d(targets), np.asarray(vectors[np.sort(sure)], dtype=np.float32)])


def precision_at(score: float) -> float | None:
    """Measured precision of a match with this normalised score (None before calibration)."""
    for edge, precision in CALIBRATION:
        if score <= edge:
            return precision
    return CALIBRATION[-1][1] if CALIBRATION else None


# A face smaller than this (pixels wide in its photo) or blurrier than this
# (variance of the Laplacian of its stored crop) is never called strong: the
# calibration above rests on lfw-dev, where 95% of faces are 52 px wide or more
# and 99% of crops score 120 or sharper, so it says little about faces below these.
STRONG_MIN_FACE_PX = 40
STRONG_MIN_SHARPNESS = 60.0


def confidence(score: float, face_px: int | None = None, sharp: float | None = None) -> tuple[str, float | None]:
    """A word and the measured precision behind it: strong >= 0.99, likely >= 0.9, else weak."""
    p = precision_at(score)
    if p is None:  # uncalibrated: by score alone
        word = "strong" if score <= 0.8 else "likely" if score <= 0.92 else "weak"
    else:
        word = "strong" if p >= 0.99 else "likely" if p >= 0.9 else "weak"
    small = face_px is not None and face_px < STRONG_MIN_FACE_PX
    blurred = sharp is not None and sharp < STRONG_MIN_SHARPNESS
    if word == "strong" and (small or blurred):
        word = "likely"
    return word, p


def groups(encodings: np.ndarray, distance: float) -> list[list[int]]:
    """Single-linkage groups: two encodings share a group when a chain of steps <= distance joins them."""
    x = np.atleast_2d(np.asarray(encodings, dtype=np.float32))
    label = list(range(len(x)))

    def root(i: int) -> int:
        while label[i] != i:
            label[i] = label[label[i]]
            i = label[i]
        return i

    for i in range(len(x)):
        near = np.flatnonzero(np.sqrt(_sqdist(x[i + 1 :], x[i])) <= distance) + i + 1
        for j in near:
            label[root(int(j))] = root(i)
    out: dict[int, list[int]] = {}
    for i in range(len(x)):
        out.setdefault(root(i), []).append(i)
    return sorted(out.values(), key=lambda g: (-len(g), g[0]))


NEIGHBOURS = 30  # the clustering graph joins a face to at most this many of its nearest faces
LISTED = 256  # ... and counts its look-alikes among this many


@dataclasses.dataclass
class Neighbours:
    """Each face's nearest faces and its own search tolerance (neighbour_table)."""

    dist: np.ndarray  # n x listed, nearest first (inf: none found)
    pos: np.ndarray  # their rows (-1: none found)
    tol: np.ndarray  # each face's own tolerance: the look-alike rule with the face as the target
    params: Params  # the rule, with the typical d_k it was measured against


def neighbour_table(vectors: np.ndarray, p: Params, listed: int = LISTED, exact_limit: int | None = None) -> Neighbours:
    """Each face's `listed` nearest faces (facegrid/neighbours.py: exact up to 50,000 faces,
    approximate beyond) and its own tolerance, its look-alikes counted among them."""
    from . import neighbours as nn

    x = np.asarray(vectors, dtype=np.float32)
    n = len(x)
    kw = {} if exact_limit is None else {"exact_limit": exact_limit}
    dist, pos = nn.nearest(x, min(listed, n), **kw)
    full = dist.shape[1] == n  # the lists hold every face: nothing lies beyond them
    dks = np.full(n, np.inf)
    for i in range(n):
        ok = pos[i] >= 0
        d, j = dist[i][ok], pos[i][ok]
        if p.lookalike_count > 0:
            dks[i] = kth_distinct(d, x[j], x[i], p.lookalike_count, p.lookalike_spread, first=len(d))
            if dks[i] == float("inf") and not full:  # not within the list: its end is a lower bound
                dks[i] = float(d[-1])
    if p.crowd_power > 0 and not p.typical and n:  # the collection's typical d_k: here, the median of every face's
        typical = float(np.median(dks))
        p = dataclasses.replace(p, typical=typical if np.isfinite(typical) else 0.0)
    tol = np.array([lookalike_tolerance(float(dk), p) for dk in dks], dtype=np.float32)
    return Neighbours(dist, pos, tol, p)


def neighbour_graph(
    vectors: np.ndarray,
    photos: np.ndarray,
    p: Params,
    neighbours: int = NEIGHBOURS,
    listed: int = LISTED,
    exact_limit: int | None = None,
    table: Neighbours | None = None,
) -> list[tuple[int, int]]:
    """Edges between faces that match each other under the search's own rule.

    Face i and j are joined when j is among i's `neighbours` nearest faces from
    other photos (or i among j's: two faces in one photo are never the same
    person), and their distance is within both faces' own search tolerance: the
    look-alike rule with the face itself as the target, its look-alikes counted
    among its `listed` nearest faces (neighbour_table, or `table` when made already).
    """
    if len(vectors) < 2:
        return []
    t = table if table is not None else neighbour_table(vectors, p, listed, exact_limit)
    edges = set()
    for i in range(len(t.dist)):
        ok = (t.pos[i] >= 0) & (photos[np.maximum(t.pos[i], 0)] != photos[i])
        for j, d in zip(t.pos[i][ok][:neighbours], t.dist[i][ok][:neighbours], strict=False):
            if d <= t.tol[i] and d <= t.tol[j]:
                edges.add((min(i, int(j)), max(i, int(j))))
    return sorted(edges)
