"""Short codes: a few bytes a face that rule out all but a few thousand faces before the exact re-rank.

A segment of CodeLayout.min_rows rows or more has short codes beside its rows:
each row projected on the CODE_DIMS principal components of the stored faces
(faiss PCAMatrix, orthonormal rows, so a projected distance is never longer
than the real one) and quantised to one byte a component (faiss
ScalarQuantizer), 48 bytes a face instead of 512, in files of
CodeLayout.part_rows rows (codes-N.faiss) that a search reads side by side.

When the codes are made, the largest distance between a row's projection and
its decoded code is measured on every row (code_error, in codes.json). So for a
row at projected, decoded distance a from the profile, its exact distance is at
least a - code_error: the floor that makes a search through the codes return
exactly what a scan of every row returns (search.py).

The projection and quantiser are trained once per index (trained.faiss, on a
sample of the first segment big enough; the quantiser's range widened by
RANGE_MARGIN so later rows rarely fall outside it, and a row that does only
raises its segment's measured code_error). A merged segment's codes are moved
from its sources (merge); rows of sources without codes are encoded.

What the codes cost and save is measured in docs/benchmarks.md ("Archive scale").
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..envelope import ENCODING_DIM

if TYPE_CHECKING:
    from .segment import Segment

log = logging.getLogger("facegrid.index")
CHUNK = 262_144  # rows encoded per step: 128 MB of float32 at most in flight
CODES_META = "codes.json"  # {"parts": [rows in codes-0.faiss, ...], "error": the codes' largest error}
TRAINED_FILE = "trained.faiss"  # the projection and quantiser every segment's codes are made with
CODE_DIMS = 48  # principal components kept (most of a face encoding's variance: docs/benchmarks.md)
TRAIN_ROWS = 200_000  # rows sampled to train the projection and the quantiser
RANGE_MARGIN = 0.2  # the quantiser's range, widened by this share on each side: later rows rarely fall outside


@dataclasses.dataclass(frozen=True)
class CodeLayout:
    """Which segments get short codes, and how many rows go in one file of them.

    Below min_rows a scan of the float32 rows is about as fast as the codes and
    costs nothing to write; files of part_rows rows are searched side by side.
    Tests make both small to take the coded path on a few hundred faces."""

    min_rows: int = 100_000
    part_rows: int = 1_000_000


def read(folder: Path, rows: int) -> tuple[list, float] | None:
    """(parts, code_error) of the segment in folder, or None when it has no short codes.

    Each part is (start, faiss index over rows start..). Raises ValueError when a file
    is missing, damaged or does not fit the segment's rows."""
    if not (folder / CODES_META).exists():
        return None
    import faiss

    # read, not mapped: a mapping paid its page faults on the first search instead
    # (docs/benchmarks.md, "Archive scale"); a process keeps the segments it opened (files.SegmentCache)
    meta = json.loads((folder / CODES_META).read_text())
    parts, start = [], 0
    for k, count in enumerate(meta["parts"]):
        try:
            part = faiss.read_index(str(folder / f"codes-{k}.faiss"))
        except RuntimeError as exc:  # faiss's word for a missing or damaged file
            raise ValueError(f"short codes of segment {folder.name}: {str(exc)[:200]}") from None
        if part.ntotal != count:
            raise ValueError(f"short codes of segment {folder.name} do not fit its rows")
        parts.append((start, part))
        start += count
    if start != rows:
        raise ValueError(f"short codes of segment {folder.name} do not fit its rows")
    return parts, float(meta["error"])


def write_for(folder: Path, seg: Path, layout: CodeLayout) -> None:
    """Write seg's short codes when it has layout.min_rows rows or more (training the projection and
    the quantiser first if the index folder has none yet)."""
    vectors = np.load(seg / "vectors.npy", mmap_mode="r")
    n = len(vectors)
    if n < layout.min_rows:
        return
    t0 = time.perf_counter()
    model = trained(folder, vectors)
    codes = np.empty((n, model.sa_code_size()), dtype=np.uint8)
    error = 0.0
    for start in range(0, n, CHUNK):
        part = codes[start : start + CHUNK]
        part[:], err = encode(model, vectors[start : start + CHUNK])
        error = max(error, err)
    write(folder, seg, codes, error, layout)
    log.info("short codes for %d faces written in %.1fs (%s)", n, time.perf_counter() - t0, seg.name)


def trained(folder: Path, vectors: np.ndarray) -> Any:
    """The index folder's projection and quantiser (faiss PCAMatrix + 8-bit ScalarQuantizer), trained
    on a sample of vectors the first time."""
    import faiss

    path = folder / TRAINED_FILE
    if path.exists():
        return faiss.read_index(str(path))
    n = len(vectors)
    take = np.sort(np.random.default_rng(0).choice(n, min(n, TRAIN_ROWS), replace=False))
    sample = np.ascontiguousarray(vectors[take], dtype=np.float32)
    pca = faiss.PCAMatrix(ENCODING_DIM, CODE_DIMS)  # orthonormal rows: a projection never lengthens a distance
    pca.train(sample)
    sq = faiss.IndexScalarQuantizer(CODE_DIMS, faiss.ScalarQuantizer.QT_8bit)
    sq.sq.rangestat_arg = RANGE_MARGIN
    sq.train(pca.apply(sample))
    whole = faiss.IndexPreTransform(pca, sq)  # points at pca and sq, which live until it is written
    tmp = folder / f"{TRAINED_FILE}.tmp{os.getpid()}"
    faiss.write_index(whole, str(tmp))
    os.replace(tmp, path)
    return faiss.read_index(str(path))


def encode(model: Any, vectors: np.ndarray) -> tuple[np.ndarray, float]:
    """(codes, their largest error): the rows projected and quantised, and the largest distance
    between a row's projection and its decoded code, measured (the quantiser clamps a value
    outside its trained range, so no bound is assumed)."""
    import faiss

    pca = faiss.downcast_VectorTransform(model.chain.at(0))
    sq = faiss.downcast_index(model.index)
    y = pca.apply(np.ascontiguousarray(vectors, dtype=np.float32))
    codes = sq.sa_encode(y)
    diff = sq.sa_decode(codes) - y
    return codes, float(np.sqrt(np.einsum("ij,ij->i", diff, diff).max())) if len(y) else 0.0


def write(folder: Path, seg: Path, codes: np.ndarray, error: float, layout: CodeLayout) -> None:
    """seg's codes in files of layout.part_rows rows, and codes.json naming their sizes and error."""
    import faiss

    parts: list[int] = []
    for start in range(0, len(codes), layout.part_rows):
        whole: Any = faiss.read_index(str(folder / TRAINED_FILE))
        sq = faiss.downcast_index(whole.index)
        sq.add_sa_codes(np.ascontiguousarray(codes[start : start + layout.part_rows]))
        whole.ntotal = sq.ntotal
        faiss.write_index(whole, str(seg / f"codes-{len(parts)}.faiss"))
        parts.append(int(sq.ntotal))
    (seg / CODES_META).write_text(json.dumps({"parts": parts, "error": error}))


def merge(folder: Path, segments: list[Segment], where: np.ndarray, seg: Path, layout: CodeLayout) -> None:
    """The merged segment's short codes from its sources': their codes moved (all are made with the
    same trained projection and quantiser, so a row's code is the same), dead rows left out;
    sources without codes encode their rows. The error is the largest of the sources'."""
    import faiss

    t0 = time.perf_counter()
    model = faiss.read_index(str(folder / TRAINED_FILE))
    codes = np.empty((len(where), model.sa_code_size()), dtype=np.uint8)
    error, at = 0.0, 0
    for source in segments:
        keep = np.arange(len(source)) if source.live is None else np.flatnonzero(source.live)
        dest = where[at : at + len(keep)]
        at += len(keep)
        src = source.short_codes()
        if src is not None:
            rows = np.concatenate([codes_of(part) for _, part in src])
            codes[dest] = rows[keep]
            error = max(error, source.code_error)
            continue
        for start in range(0, len(keep), CHUNK):
            part = keep[start : start + CHUNK]
            codes[dest[start : start + CHUNK]], err = encode(model, source.vectors[part])
            error = max(error, err)
    write(folder, seg, codes, error, layout)
    log.info("short codes for %d merged faces in %.1fs (%s)", len(codes), time.perf_counter() - t0, seg.name)


def codes_of(part: Any) -> np.ndarray:
    """The raw codes of one file of short codes, a row per face."""
    import faiss

    flat: Any = faiss.downcast_index(part.index)
    return faiss.vector_to_array(flat.codes).reshape(part.ntotal, -1)
