"""The search itself: the live faces within a radius of a profile, exactly as a scan of every row finds them.

FaceIndex.near returns the live faces within a radius of the profile, nearest
first as far as the caller needs them, each with its exact distance, and the
same faces as a scan of every row would: no face it leaves out can be within
the radius.

A search asks each file of short codes for its SearchOptions.knn_first nearest
codes: every row left out has a floor beyond the last one's, so every face
within the smallest of those floors is among the candidates (complete). The
candidates whose floor is within it are re-ranked exactly from their float32
rows (only those rows are read from the memory map), the same way as on the
scan path; the look-alike rule (scoring.settled) says whether the faces within
that radius settle the answer, and if not the files are asked for 4x more. The
answer is the exact scan's by construction; SearchOptions(exact=True) scans
every row instead (the tests and the bench compare the two).

Why this and not a vector index that probes a few cells: in 128 dimensions the
faces within 0.5 of a profile spread over hundreds of an inverted file's cells,
so probing the nearest cells misses some of the look-alikes that set a search's
tolerance, and no bound on a cell prunes it (docs/benchmarks.md, "Archive scale").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from concurrent.futures import Executor

import numpy as np

from ..envelope import ENCODING_DIM
from .segment import Ids, Segment, Vectors

KNN_FIRST = 4096  # neighbours asked of each file of short codes first (4x more until the search is settled)


@dataclasses.dataclass(frozen=True)
class SearchOptions:
    """How a search reads the index. exact: scan every row, short codes unused (the tests and the
    bench compare the two paths); knn_first: neighbours asked of each file of short codes first."""

    exact: bool = False
    knn_first: int = KNN_FIRST


@dataclasses.dataclass
class Near:
    """The live faces within a radius of a profile: positions in the index (ascending),
    exact distances, and the faces' vectors (row i of rows is position positions[i])."""

    positions: np.ndarray
    dist: np.ndarray
    rows: np.ndarray


class FaceIndex:
    """Every live stored face, as of one database generation.

    threads, if given, searches the files of short codes side by side (faiss lets go of the GIL)."""

    def __init__(
        self,
        segments: list[Segment],
        generation: int,
        options: SearchOptions | None = None,
        threads: Executor | None = None,
    ):
        self.segments, self.generation = segments, generation
        self.options = options or SearchOptions()
        self.threads = threads
        self.k_start = self.options.knn_first  # neighbours near() asks each file of short codes for first
        self.vectors = Vectors(segments)
        self.rowids = Ids(segments)

    @classmethod
    def from_arrays(cls, vectors: np.ndarray, sqnorms: np.ndarray, rowids: np.ndarray, generation: int = 0):
        """An index over arrays in memory (no files): for tests and tools."""
        return cls([Segment(vectors, sqnorms, rowids)], generation)

    @classmethod
    def joined(cls, parts: list[FaceIndex], options: SearchOptions | None = None) -> FaceIndex:
        """One index over the segments of several (several databases searched as one collection)."""
        threads = next((p.threads for p in parts if p.threads is not None), None)
        return cls([seg for part in parts for seg in part.segments], 0, options, threads)

    def __len__(self) -> int:
        return len(self.rowids)

    def live_count(self) -> int:
        return sum(len(s) if s.live is None else int(s.live.sum()) for s in self.segments)

    def distances(self, targets: np.ndarray, mode: str) -> np.ndarray:
        """Distance of every indexed face to the target profile (inf for a dead row).

        mode "min": to the nearest target encoding; "mean": to their mean.
        """
        targets = profile(targets, mode)
        out = np.empty(len(self), dtype=np.float32)
        at = 0
        for seg in self.segments:
            part = out[at : at + len(seg)]
            for start, d2 in seg.scan(targets):
                part[start : start + len(d2)] = d2
            np.maximum(part, 0, out=part)
            np.sqrt(part, out=part)
            if seg.live is not None:
                part[~seg.live] = np.inf
            at += len(seg)
        return out

    def near(
        self, targets: np.ndarray, mode: str, radius: float, settled: Callable[[Near, float], bool] | None = None
    ) -> Near:
        """Every live face within radius of the target profile, with its exact distance.

        mode as in distances(). Segments with short codes give candidates by
        their 8-bit codes (unless options.exact), the others are scanned; every
        candidate's distance is then computed from its float32 row, the same way on
        both paths. settled(near, r), if given, is asked about the faces within
        r < radius as soon as every face within r is known (nearest first:
        options.knn_first neighbours of each file, or as many as this index's
        previous search needed, and 4x more each time): when it says they are
        enough, those are returned.
        """
        targets = profile(targets, mode)
        k = self.k_start
        while True:
            positions, approx, complete = [], [], radius
            for seg, start in zip(self.segments, self.vectors.starts, strict=False):
                pos, dist, done = seg.candidates(targets, radius, k, self.options.exact, self.threads)
                if seg.live is not None and len(pos):
                    keep = seg.live[pos]
                    pos, dist = pos[keep], dist[keep]
                positions.append(pos + start)
                approx.append(dist)
                complete = min(complete, done)
            near = self._rerank(targets, positions, approx, complete)
            if complete >= radius or (settled is not None and settled(near, complete)):
                self.k_start = k  # a search's second pass, near the first, starts where the first ended
                return near
            k *= 4

    def _rerank(self, targets: np.ndarray, positions: list, floors: list, radius: float) -> Near:
        """Exact distances of the candidates that may lie within radius (floor <= radius); those within
        it, by position."""
        pos = np.concatenate(positions) if positions else np.zeros(0, np.int64)
        rough = np.concatenate(floors) if floors else np.zeros(0, np.float32)
        pos = pos[rough <= radius]
        pos = np.unique(pos) if len(targets) > 1 else np.sort(pos)  # one target: no row comes twice
        rows = self.vectors[pos] if len(pos) else np.zeros((0, ENCODING_DIM), np.float32)
        dist = np.full(len(pos), np.inf, dtype=np.float32)
        for t in targets:  # row by row, so a face's distance does not depend on the other candidates
            diff = rows - t
            np.minimum(dist, np.sqrt(np.einsum("ij,ij->i", diff, diff)), out=dist)
        keep = dist <= radius
        return Near(pos[keep], dist[keep], rows[keep])


def profile_distances(rows: np.ndarray, targets: np.ndarray, mode: str) -> np.ndarray:
    """Each row's distance to the profile, as near() measures it (mode mean: to the targets' mean;
    min: to the nearest target)."""
    dist = np.full(len(rows), np.inf, dtype=np.float32)
    for t in profile(targets, mode):
        diff = rows - t
        np.minimum(dist, np.sqrt(np.einsum("ij,ij->i", diff, diff)), out=dist)
    return dist


def profile(targets: np.ndarray, mode: str) -> np.ndarray:
    """The target encodings as searched: all of them ("min"), or their mean ("mean")."""
    targets = np.atleast_2d(np.asarray(targets, dtype=np.float32))
    return targets.mean(axis=0, keepdims=True) if mode == "mean" else targets
