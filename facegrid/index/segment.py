"""One immutable part of the index, and several of them addressed as one matrix.

A segment is a folder with vectors.npy (float32 N x 128), sqnorms.npy (float32
N, the squared norms) and rowids.npy (int64 N, faces.rowid, ascending). Every
array is memory-mapped: opening a segment reads none of its rows. Its live mask
(bool N, False where a row was replaced or deleted since) is a separate file,
named by the manifest, so that the segment itself never changes.

Distances are Euclidean, as face_recognition's face_distance:
|a - b|^2 = |a|^2 + |b|^2 - 2 a.b, computed in chunks so memory stays flat.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

import numpy as np

from ..envelope import ENCODING_DIM
from . import codes as codes_mod

CHUNK = 262_144  # rows per step: 128 MB of float32 at most in flight
NAMES = ("vectors", "sqnorms", "rowids")
SLACK = 1e-4  # float32 rounding in a projected distance, far above what it can be
SLACK_SCAN = 1e-3  # the same for a scanned distance (|a|^2 + |b|^2 - 2 a.b)


class Segment:
    """One immutable part of the index, with the rows still live in it."""

    def __init__(self, vectors: np.ndarray, sqnorms: np.ndarray, rowids: np.ndarray, folder: Path | None = None):
        self.folder = folder  # None: arrays in memory (FaceIndex.from_arrays)
        self.vectors, self.sqnorms, self.rowids = vectors, sqnorms, rowids
        self.live: np.ndarray | None = None  # False where a row was replaced or deleted (with_live)
        self._codes: list | None = None
        self.code_error = 0.0

    @classmethod
    def open(cls, folder: Path) -> Segment:
        """The segment in folder, its arrays memory-mapped."""
        vectors, sqnorms, rowids = (np.load(folder / f"{n}.npy", mmap_mode="r") for n in NAMES)
        return cls(vectors, sqnorms, rowids, folder)

    def __len__(self) -> int:
        return len(self.rowids)

    def with_live(self, live: Path) -> Segment:
        """This segment with the live mask in file live (the arrays and codes shared, not copied)."""
        seg = copy.copy(self)
        seg.live = np.load(live, mmap_mode="r")
        if seg.live.shape != self.rowids.shape:
            raise ValueError(f"live mask {live.name} does not fit segment {self.folder and self.folder.name}")
        return seg

    def short_codes(self) -> list | None:
        """This segment's short codes, or None when it has none: a list of (start, faiss index over
        rows start..), parts of at most part_rows rows searched side by side.

        code_error is then the largest distance, in the projected space, between a row's
        projection and its decoded code (measured on every row when the codes were made)."""
        if self._codes is None and self.folder is not None:
            found = codes_mod.read(self.folder, len(self))
            if found is not None:
                self._codes, self.code_error = found
        return self._codes

    def scan(self, targets: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
        """(start, squared distance of rows start.. to the nearest target), chunk by chunk."""
        tnorm = (targets**2).sum(axis=1)
        for start in range(0, len(self), CHUNK):
            d2 = self.vectors[start : start + CHUNK] @ targets.T  # in place from here: no temporaries
            d2 *= -2.0
            d2 += self.sqnorms[start : start + CHUNK, None]
            d2 += tnorm[None, :]
            yield start, d2.min(axis=1)

    def candidates(
        self, targets: np.ndarray, radius: float, k: int, exact: bool = False, threads: Executor | None = None
    ) -> tuple[np.ndarray, np.ndarray, float]:
        """(positions, floors, complete): the rows that may lie within radius of a target.

        floors: a lower bound on each one's exact distance to the nearest target. Every
        row whose exact distance is `complete` (<= radius) or less is among them. From
        the short codes: the k nearest of each target by projected, decoded distance a;
        a row's exact distance is at least a - code_error (the projection shortens
        every distance, the code moves a row by code_error at most), so every row not
        returned lies beyond the k-th one's a - code_error. From a scan (no short
        codes, or exact): every row within the radius, complete up to the radius.
        threads, if given, searches the files of short codes side by side.
        """
        codes = None if exact else self.short_codes()
        if codes is not None:
            return self._from_codes(codes, np.ascontiguousarray(targets), radius, k, threads)
        limit = (radius + SLACK_SCAN) ** 2
        pos, floors = [], []
        for start, d2 in self.scan(targets):
            hit = np.flatnonzero(d2 <= limit)
            pos.append(hit + start)
            floors.append(np.sqrt(np.maximum(d2[hit], 0)) - SLACK_SCAN)
        if not pos:
            return np.zeros(0, np.int64), np.zeros(0, np.float32), radius
        return np.concatenate(pos), np.concatenate(floors), radius

    def _from_codes(
        self, codes: list, targets: np.ndarray, radius: float, k: int, threads: Executor | None
    ) -> tuple[np.ndarray, np.ndarray, float]:
        """candidates() through the short codes."""
        mapper: Callable[..., Iterable[Any]] = map if threads is None else threads.map
        pos, floors, complete = [], [], radius
        for start, d2, found in mapper(lambda part: (part[0], *part[1].search(targets, k)), codes):
            floor = np.sqrt(np.maximum(d2, 0)) - (self.code_error + SLACK)
            ok = (found >= 0) & (floor <= radius)
            pos.append(found[ok].astype(np.int64) + start)
            floors.append(floor[ok])
            if (found[:, -1] >= 0).all():  # k rows or more in this part: those beyond the k-th are farther
                complete = min(complete, float(floor[:, -1].min()))
        return np.concatenate(pos), np.concatenate(floors), max(complete, 0.0)


class Vectors:
    """The vectors of several segments addressed as one matrix (rows by global position)."""

    def __init__(self, segments: list[Segment]):
        self.segments = segments
        self.starts = np.cumsum([0] + [len(s) for s in segments])

    def __len__(self) -> int:
        return int(self.starts[-1])

    def __getitem__(self, positions) -> np.ndarray:
        positions = np.atleast_1d(np.asarray(positions, dtype=np.int64))
        out = np.empty((len(positions), ENCODING_DIM), dtype=np.float32)
        which = np.searchsorted(self.starts, positions, side="right") - 1
        for k in np.unique(which):
            sel = which == k
            out[sel] = self.segments[k].vectors[positions[sel] - self.starts[k]]
        return out


class Ids:
    """The rowids of several segments addressed as one array (by global position), read in place."""

    def __init__(self, segments: list[Segment]):
        self.segments = segments
        self.starts = np.cumsum([0] + [len(s) for s in segments])

    def __len__(self) -> int:
        return int(self.starts[-1])

    def __getitem__(self, positions):
        if np.isscalar(positions):
            k = int(np.searchsorted(self.starts, positions, side="right") - 1)
            return self.segments[k].rowids[int(positions) - self.starts[k]]
        positions = np.asarray(positions, dtype=np.int64)
        out = np.empty(positions.shape, dtype=np.int64)
        which = np.searchsorted(self.starts, positions, side="right") - 1
        for k in np.unique(which):
            sel = which == k
            out[sel] = self.segments[k].rowids[positions[sel] - self.starts[k]]
        return out

    def __iter__(self):
        for seg in self.segments:
            yield from seg.rowids

    def __array__(self, dtype=None, copy=None):
        whole = np.concatenate([s.rowids for s in self.segments]) if self.segments else np.zeros(0, np.int64)
        return whole if dtype is None else whole.astype(dtype)
