"""The nearest stored faces of every stored face (a k-nearest-neighbour table).

Up to EXACT_LIMIT faces it is exact, block by block in NumPy; past that, an
inverted-file index from faiss (faces split into about 4 x sqrt(n) cells, each
face's nearest looked for in its NPROBE nearest cells) keeps the work to about
n x 8,000 distances instead of n x n. search.py --people builds its graph from
this table.
"""

from __future__ import annotations

import logging
import math
import time

import numpy as np

log = logging.getLogger("facegrid.neighbours")
EXACT_LIMIT = 50_000
NPROBE = 32
TRAIN_SAMPLE = 200_000


def nearest(x: np.ndarray, k: int, exact_limit: int = EXACT_LIMIT, block: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """For each row of x, its k nearest rows (itself included), nearest first.

    Returns (distances float32 n x k, positions int64 n x k); a missing
    neighbour (approximate search found fewer) has distance inf and position -1.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    n = len(x)
    k = min(k, n)
    if n == 0 or k == 0:
        return np.zeros((n, 0), np.float32), np.zeros((n, 0), np.int64)
    t0 = time.perf_counter()
    out = _exact(x, k, block) if n <= exact_limit else _inverted_file(x, k)
    log.info(
        "nearest %d of %d faces in %.1fs (%s)",
        k,
        n,
        time.perf_counter() - t0,
        "exact" if n <= exact_limit else f"faiss IVF, {NPROBE} cells probed",
    )
    return out


def _exact(x: np.ndarray, k: int, block: int) -> tuple[np.ndarray, np.ndarray]:
    n = len(x)
    sq = np.einsum("ij,ij->i", x, x)
    dist = np.empty((n, k), np.float32)
    pos = np.empty((n, k), np.int64)
    for start in range(0, n, block):
        d = x[start : start + block] @ x.T
        d *= -2.0
        d += sq[start : start + block, None]
        d += sq[None, :]
        part = np.argpartition(d, k - 1, axis=1)[:, :k] if k < n else np.tile(np.arange(n), (len(d), 1))
        pd = np.take_along_axis(d, part, axis=1)
        order = np.argsort(pd, axis=1, kind="stable")
        pos[start : start + len(d)] = np.take_along_axis(part, order, axis=1)
        dist[start : start + len(d)] = np.sqrt(np.maximum(np.take_along_axis(pd, order, axis=1), 0))
    return dist, pos


def _inverted_file(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    import faiss

    n, dim = x.shape
    cells = max(1, min(int(4 * math.sqrt(n)), n // 39))
    quantizer = faiss.IndexFlatL2(dim)
    index = faiss.IndexIVFFlat(quantizer, dim, cells)
    sample = x if n <= TRAIN_SAMPLE else x[np.random.default_rng(0).choice(n, TRAIN_SAMPLE, replace=False)]
    index.train(sample)
    index.add(x)
    index.nprobe = min(NPROBE, cells)
    d2, pos = index.search(x, k)
    dist = np.sqrt(np.maximum(d2, 0)).astype(np.float32)
    dist[pos < 0] = np.inf
    return dist, pos.astype(np.int64)
