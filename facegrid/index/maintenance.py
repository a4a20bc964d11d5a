"""A memory-mapped matrix of every stored encoding, kept up to date in steps.

Beside the database sits ``<db>.index/``: immutable *segments*, each a folder
with vectors.npy (float32 N x 128), sqnorms.npy (float32 N, the squared norms)
and rowids.npy (int64 N, faces.rowid, ascending), plus manifest.json naming the
segments, the database generation they reach, and for each segment that newer
writes have touched its live mask (live-*.npy, bool N, False where a row was
replaced or deleted) and how many of its rows are dead.

Opening an index reads no row of it: every array is memory-mapped, the live
masks included, and the rowids of all segments are addressed in place (no
concatenated copy), so bringing the index up to date costs the changed rows and
the masks of the segments they touch, not the size of the index.

Bringing the index up to date reads only the faces written since its
generation (faces.gen, an indexed column) and those deleted since
(deleted_faces): they become one new segment, and the rows they replace are
cleared in the older segments' live masks (a new mask file, never rewritten in
place). A new manifest is written to a temporary name
and renamed over the old one, so a search that runs meanwhile keeps the
consistent snapshot it opened. When more than MAX_SEGMENTS pile up, the newest
are merged into one, tiered (_merge_tail): each older segment joins only when it
is no larger than what is merged so far, so a row is copied about log(rows)
times in the index's life, never the big first segment for a small tail. When a
tenth of the rows are dead, or the database is not the one the index was made
from, the index is built again whole.

Search (FaceIndex.near) returns the live faces within a radius of the profile,
nearest first as far as the caller needs them, each with its exact distance, and
the same faces as a scan of every row would: no face it leaves out can be within
the radius.

A segment of VECTOR_MIN_ROWS rows or more also has short codes beside its rows:
each row projected on the CODE_DIMS principal components of the stored faces
(faiss PCAMatrix, orthonormal rows, so a projected distance is never longer than
the real one) and quantised to one byte a component (faiss ScalarQuantizer):
48 bytes a face, 480 MB for 10,000,000, in files of PART_ROWS rows
(codes-N.faiss, read into memory when the segment is opened, 20 ms a file, and
searched side by side in threads; a process keeps the last OPEN_SEGMENTS
segments it opened, so a second search reads nothing again). When the codes
are made, the largest distance between a row's projection and its decoded code
is measured on every row (code_error, in codes.json). So for a row at projected,
decoded distance a from the profile, its exact distance is at least
a - code_error: the floor. A search asks each file for its KNN_FIRST nearest
codes: every row left out has a floor beyond the last one's, so every face
within the smallest of those floors is among the candidates (complete). The
candidates whose floor is within it are re-ranked exactly from their float32
rows (only those rows are read from the memory map), the same way as on the
scan path; the look-alike rule (scoring.settled) says whether the faces within
that radius settle the answer, and if not the files are asked for 4x more. The
answer is the exact scan's by construction; EXACT = True scans every row
instead (the tests and the bench compare the two).

Why this and not a vector index that probes a few cells: in 128 dimensions the
faces within 0.5 of a profile spread over hundreds of an inverted file's 2,048
cells, so probing the nearest cells misses some of the look-alikes that set
a search's tolerance, and no bound on a cell prunes it (docs/benchmarks.md,
"Archive scale"). The short codes read 48 bytes a face instead of 512, and their
floor rules out all but a few thousand faces for the exact re-rank.

The switch sits at 100,000 rows: below, the scan of float32 rows takes about
10-20 ms a pass (0.1-0.2 us a row on 2 cores), and writing codes costs about
0.3 s a million rows. The projection and quantiser are trained once per index
(trained.faiss, on a sample of the first segment big enough; the quantiser's
range widened by RANGE_MARGIN so later rows rarely fall outside it, and a row
that does only raises its segment's measured code_error). A merged segment's
codes are moved from its sources (_merge_vectors); rows of sources without
codes are encoded.

Distances are Euclidean, as face_recognition's face_distance:
|a - b|^2 = |a|^2 + |b|^2 - 2 a.b, computed in chunks so memory stays flat.
"""

from __future__ import annotations

import collections
import copy
import dataclasses
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from . import store
from .envelope import ENCODING_DIM

log = logging.getLogger("facegrid.index")
CHUNK = 262_144  # rows per step: 128 MB of float32 at most in flight
INDEX_FORMAT = 5
MAX_SEGMENTS = 8
MAX_DEAD_SHARE = 0.1
NAMES = ("vectors", "sqnorms", "rowids")
VECTOR_MIN_ROWS = 100_000  # segments this big get short codes (smaller ones are scanned)
CODES_META = "codes.json"  # {"parts": [rows in codes-0.faiss, ...], "error": the codes' largest error}
PART_ROWS = 1_000_000  # rows per file of short codes: the files of a search are read side by side
TRAINED_FILE = "trained.faiss"  # the projection and quantiser every segment's codes are made with
CODE_DIMS = 48  # principal components kept (97 % of a face encoding's variance)
TRAIN_ROWS = 200_000  # rows sampled to train the projection and the quantiser
RANGE_MARGIN = 0.2  # the quantiser's range, widened by this share on each side: later rows rarely fall outside
KNN_FIRST = 4096  # neighbours asked of each file of short codes first (4x more until the search is settled)
SLACK = 1e-4  # float32 rounding in a projected distance, far above what it can be
SLACK_SCAN = 1e-3  # the same for a scanned distance (|a|^2 + |b|^2 - 2 a.b)
OPEN_SEGMENTS = 32  # segments a process keeps open between searches
EXACT = False  # True: scan every row, short codes unused (tests and the bench compare)


class Segment:
    """One immutable part of the index, with the rows still live in it."""

    def __init__(self, folder: Path):
        self.folder: Path | None = folder  # None: arrays in memory (FaceIndex.from_arrays)
        self.vectors, self.sqnorms, self.rowids = (np.load(folder / f"{n}.npy", mmap_mode="r") for n in NAMES)
        self.live: np.ndarray | None = None  # False where a row was replaced or deleted (with_live)
        self._codes: list | None = None
        self.code_error = 0.0

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
        rows start..), parts of at most PART_ROWS rows searched side by side.

        code_error is then the largest distance, in the projected space, between a row's
        projection and its decoded code (measured on every row when the codes were made)."""
        if self._codes is None and self.folder is not None and (self.folder / CODES_META).exists():
            import faiss

            # read, not mapped: 20 ms a file of 1,000,000 rows, where a mapping took about 5x that in page
            # faults on the first search; a process keeps the segments it opened (_segment)
            meta = json.loads((self.folder / CODES_META).read_text())
            parts, start = [], 0
            for k, rows in enumerate(meta["parts"]):
                try:
                    part = faiss.read_index(str(self.folder / f"codes-{k}.faiss"))
                except RuntimeError as exc:  # faiss's word for a missing or damaged file
                    raise ValueError(f"short codes of segment {self.folder.name}: {str(exc)[:200]}") from None
                if part.ntotal != rows:
                    raise ValueError(f"short codes of segment {self.folder.name} do not fit its rows")
                parts.append((start, part))
                start += rows
            if start != len(self):
                raise ValueError(f"short codes of segment {self.folder.name} do not fit its rows")
            self._codes, self.code_error = parts, float(meta["error"])
        return self._codes

    def scan(self, targets: np.ndarray):
        """(start, squared distance of rows start.. to the nearest target), chunk by chunk."""
        tnorm = (targets**2).sum(axis=1)
        for start in range(0, len(self), CHUNK):
            d2 = self.vectors[start : start + CHUNK] @ targets.T  # in place from here: no temporaries
            d2 *= -2.0
            d2 += self.sqnorms[start : start + CHUNK, None]
            d2 += tnorm[None, :]
            yield start, d2.min(axis=1)

    def candidates(self, targets: np.ndarray, radius: float, k: int) -> tuple[np.ndarray, np.ndarray, float]:
        """(positions, floors, complete): the rows that may lie within radius of a target.

        floors: a lower bound on each one's exact distance to the nearest target. Every
        row whose exact distance is `complete` (<= radius) or less is among them. From
        the short codes: the k nearest of each target by projected, decoded distance a;
        a row's exact distance is at least a - code_error (the projection shortens
        every distance, the code moves a row by code_error at most), so every row not
        returned lies beyond the k-th one's a - code_error. From a scan (no short
        codes, or EXACT): every row within the radius, complete up to the radius.
        """
        codes = None if EXACT else self.short_codes()
        if codes is not None:
            targets = np.ascontiguousarray(targets)
            pos, floors, complete = [], [], radius
            for start, d2, found in _pool().map(lambda part: (part[0], *part[1].search(targets, k)), codes):
                floor = np.sqrt(np.maximum(d2, 0)) - (self.code_error + SLACK)
                ok = (found >= 0) & (floor <= radius)
                pos.append(found[ok].astype(np.int64) + start)
                floors.append(floor[ok])
                if (found[:, -1] >= 0).all():  # k rows or more in this part: those beyond the k-th are farther
                    complete = min(complete, float(floor[:, -1].min()))
            return np.concatenate(pos), np.concatenate(floors), max(complete, 0.0)
        limit = (radius + SLACK_SCAN) ** 2
        pos, floors = [], []
        for start, d2 in self.scan(targets):
            hit = np.flatnonzero(d2 <= limit)
            pos.append(hit + start)
            floors.append(np.sqrt(np.maximum(d2[hit], 0)) - SLACK_SCAN)
        if not pos:
            return np.zeros(0, np.int64), np.zeros(0, np.float32), radius
        return np.concatenate(pos), np.concatenate(floors), radius


class Rows:
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


@dataclasses.dataclass
class Near:
    """The live faces within a radius of a profile: positions in the index (ascending),
    exact distances, and the faces' vectors (row i of rows is position positions[i])."""

    positions: np.ndarray
    dist: np.ndarray
    rows: np.ndarray


class FaceIndex:
    """Every live stored face, as of one database generation."""

    def __init__(self, segments: list[Segment], generation: int):
        self.segments, self.generation = segments, generation
        self.k_start = KNN_FIRST  # neighbours near() asks each file of short codes for first
        self.vectors = Rows(segments)
        self.rowids = Ids(segments)

    @classmethod
    def from_arrays(cls, vectors: np.ndarray, sqnorms: np.ndarray, rowids: np.ndarray, generation: int = 0):
        """An index over arrays in memory (no files): for tests and tools."""
        seg = Segment.__new__(Segment)
        seg.folder, seg.vectors, seg.sqnorms, seg.rowids = None, vectors, sqnorms, rowids
        seg.live, seg._codes, seg.code_error = None, None, 0.0
        return cls([seg], generation)

    def __len__(self) -> int:
        return len(self.rowids)

    def live_count(self) -> int:
        return sum(len(s) if s.live is None else int(s.live.sum()) for s in self.segments)

    def distances(self, targets: np.ndarray, mode: str) -> np.ndarray:
        """Distance of every indexed face to the target profile (inf for a dead row).

        mode "min": to the nearest target encoding; "mean": to their mean.
        """
        targets = _profile(targets, mode)
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

    def near(self, targets: np.ndarray, mode: str, radius: float, settled=None) -> Near:
        """Every live face within radius of the target profile, with its exact distance.

        mode as in distances(). Segments with short codes give candidates by
        their 8-bit codes (unless EXACT), the others are scanned; every candidate's
        distance is then computed from its float32 row, the same way on both paths.
        settled(near, r), if given, is asked about the faces within r < radius as
        soon as every face within r is known (nearest first: KNN_FIRST neighbours of
        each file, or as many as this index's previous search needed, and 4x more each
        time): when it says they are enough, those are returned.
        """
        targets = _profile(targets, mode)
        k = self.k_start
        while True:
            positions, approx, complete = [], [], radius
            for seg, start in zip(self.segments, self.vectors.starts, strict=False):
                pos, dist, done = seg.candidates(targets, radius, k)
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


def _profile(targets: np.ndarray, mode: str) -> np.ndarray:
    targets = np.atleast_2d(np.asarray(targets, dtype=np.float32))
    return targets.mean(axis=0, keepdims=True) if mode == "mean" else targets


def index_dir(db_path: str | Path) -> Path:
    """<db>.index beside the database, or a per-user cache folder when that folder is read-only."""
    beside = Path(str(db_path) + ".index")
    if _writable(beside.parent):
        return beside
    real = str(Path(db_path).resolve())
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "facegrid" / "index"
    name = f"{Path(real).name}-{hashlib.sha256(real.encode()).hexdigest()[:16]}.index"
    for base in (cache, Path(tempfile.gettempdir()) / f"facegrid-index-{os.getuid()}"):
        try:
            base.mkdir(parents=True, exist_ok=True, mode=0o700)
            if _writable(base):
                return base / name
        except OSError:
            continue
    return beside  # nowhere to write: build() names the folder in its error


def _writable(folder: Path) -> bool:
    """Can this process make files in folder? (os.access says yes to root on a read-only mount.)"""
    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def _manifest(folder: Path) -> dict | None:
    try:
        meta = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and meta.get("format") == INDEX_FORMAT else None


def _open(folder: Path, meta: dict) -> FaceIndex:
    segments = [_segment(folder / e["name"], folder / e["live"] if e.get("live") else None) for e in meta["segments"]]
    return FaceIndex(segments, meta["generation"])


_opened: collections.OrderedDict[str, Segment] = collections.OrderedDict()


def _segment(folder: Path, live: Path | None) -> Segment:
    """The segment in folder with this live mask. A segment's files never change (a new one gets a
    new name), so the ones opened last stay open (OPEN_SEGMENTS): a process that searches again
    reads neither its codes again nor the pages of its rows it has touched before."""
    key = str(folder)
    seg = _opened.get(key)
    if seg is None:
        seg = Segment(folder)
        seg.short_codes()  # read now, so a damaged file is found by load(), not by a search
        _opened[key] = seg
        while len(_opened) > OPEN_SEGMENTS:
            _opened.popitem(last=False)
    _opened.move_to_end(key)
    return seg if live is None else seg.with_live(live)


def load(db, db_path: str | Path) -> FaceIndex:
    """The index for this database, brought up to date first if the database changed."""
    folder = index_dir(db_path)
    gen = store.generation(db)
    meta = _manifest(folder)
    ident = store.db_id(db)  # the generation alone would take another database's index for this one's
    if meta and ident is not None and meta.get("db_id") == ident:
        try:
            if meta["generation"] == gen:
                return _open(folder, meta)
            if store.has_change_log(db) and meta["generation"] < gen:
                return update(db, db_path, folder, meta)
        except (OSError, ValueError, KeyError) as exc:
            log.warning("search index in %s is unreadable (%s); building it again", folder, exc)
    return build(db, db_path, gen)


def _write_segment(folder: Path, name: str, rows) -> int:
    """rows: an iterator of (rowid, encoding blob) in rowid order. Returns the count."""
    seg = folder / name
    seg.mkdir(parents=True)
    ids, blobs = [], []
    for rowid, blob in rows:
        if blob and len(blob) == ENCODING_DIM * 4:
            ids.append(rowid)
            blobs.append(blob)
    n = len(ids)
    vectors = np.frombuffer(b"".join(blobs), dtype="<f4").reshape(n, ENCODING_DIM)
    np.save(seg / "vectors.npy", vectors)
    np.save(seg / "sqnorms.npy", np.einsum("ij,ij->i", vectors, vectors).astype(np.float32))
    np.save(seg / "rowids.npy", np.asarray(ids, dtype=np.int64))
    _index_segment(folder, seg)
    return n


def _index_segment(folder: Path, seg: Path) -> None:
    """Write seg's short codes when it has VECTOR_MIN_ROWS rows or more (training the projection and
    the quantiser first if the index folder has none yet)."""
    vectors = np.load(seg / "vectors.npy", mmap_mode="r")
    n = len(vectors)
    if n < VECTOR_MIN_ROWS:
        return
    t0 = time.perf_counter()
    trained = _trained(folder, vectors)
    codes = np.empty((n, trained.sa_code_size()), dtype=np.uint8)
    error = 0.0
    for start in range(0, n, CHUNK):
        part = codes[start : start + CHUNK]
        part[:], err = _encode(trained, vectors[start : start + CHUNK])
        error = max(error, err)
    _write_codes(folder, seg, codes, error)
    log.info("short codes for %d faces written in %.1fs (%s)", n, time.perf_counter() - t0, seg.name)


def _trained(folder: Path, vectors: np.ndarray):
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


def _encode(trained: Any, vectors: np.ndarray) -> tuple[np.ndarray, float]:
    """(codes, their largest error): the rows projected and quantised, and the largest distance
    between a row's projection and its decoded code, measured (the quantiser clamps a value
    outside its trained range, so no bound is assumed)."""
    import faiss

    pca = faiss.downcast_VectorTransform(trained.chain.at(0))
    sq = faiss.downcast_index(trained.index)
    y = pca.apply(np.ascontiguousarray(vectors, dtype=np.float32))
    codes = sq.sa_encode(y)
    diff = sq.sa_decode(codes) - y
    return codes, float(np.sqrt(np.einsum("ij,ij->i", diff, diff).max())) if len(y) else 0.0


def _write_codes(folder: Path, seg: Path, codes: np.ndarray, error: float) -> None:
    import faiss

    parts: list[int] = []
    for start in range(0, len(codes), PART_ROWS):
        whole: Any = faiss.read_index(str(folder / TRAINED_FILE))
        sq = faiss.downcast_index(whole.index)
        sq.add_sa_codes(np.ascontiguousarray(codes[start : start + PART_ROWS]))
        whole.ntotal = sq.ntotal
        faiss.write_index(whole, str(seg / f"codes-{len(parts)}.faiss"))
        parts.append(int(sq.ntotal))
    (seg / CODES_META).write_text(json.dumps({"parts": parts, "error": error}))


_threads = None


def _pool():
    """Threads for reading the parts of short codes side by side (faiss lets go of the GIL)."""
    global _threads
    if _threads is None:
        from concurrent.futures import ThreadPoolExecutor

        _threads = ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="facegrid-codes")
    return _threads


def _commit(folder: Path, meta: dict) -> None:
    tmp = folder / f"manifest.json.tmp{os.getpid()}"
    tmp.write_text(json.dumps(meta))
    os.replace(tmp, folder / "manifest.json")


def _stamp() -> str:
    return f"{time.time_ns():x}-{os.getpid()}"


def update(db, db_path: str | Path, folder: Path, meta: dict) -> FaceIndex:
    """Add the faces written since meta's generation as a new segment; mark what they replace."""
    t0 = time.perf_counter()
    since = meta["generation"]
    db.execute("BEGIN")  # one snapshot: the generation, the changed rows and the deletions agree
    try:
        gen = store.generation(db)
        changed, deleted = store.changes_since(db, since)
    finally:
        db.execute("COMMIT")
    stamp = _stamp()
    name = f"seg-{stamp}"
    added = _write_segment(folder, name, changed) if changed else 0
    gone = np.unique(np.asarray([r for r, _ in changed] + deleted, dtype=np.int64))
    entries, dead_total, total = [], 0, 0
    for k, entry in enumerate(meta["segments"]):
        rowids = np.load(folder / entry["name"] / "rowids.npy", mmap_mode="r")  # read only where bisected
        hit = gone[(gone >= rowids[0]) & (gone <= rowids[-1])] if len(rowids) and len(gone) else gone[:0]
        at = np.minimum(np.searchsorted(rowids, hit), len(rowids) - 1)
        at = at[rowids[at] == hit]
        if len(at):
            live = np.load(folder / entry["live"]) if entry.get("live") else np.ones(len(rowids), dtype=bool)
            fresh = int(live[at].sum())
            if fresh:
                live[at] = False
                entry = dict(entry, live=f"live-{k}-{stamp}.npy", dead=entry.get("dead", 0) + fresh)
                np.save(folder / entry["live"], live)
        entries.append(entry)
        dead_total += entry.get("dead", 0)
        total += len(rowids)
    if added:
        entries.append({"name": name})
        total += added
    new = dict(meta, generation=gen, segments=entries)
    if dead_total > MAX_DEAD_SHARE * max(total, 1):
        shutil.rmtree(folder / name, ignore_errors=True)
        return build(db, db_path, gen)
    if len(entries) > MAX_SEGMENTS:
        new = _merge_tail(folder, new)
    _commit(folder, new)
    _sweep(folder, new)
    log.info(
        "updated the search index: %d new or changed face(s), %d deleted, in %.2fs (%s)",
        len(changed),
        len(deleted),
        time.perf_counter() - t0,
        folder,
    )
    return _open(folder, new)


def _merge_tail(folder: Path, meta: dict) -> dict:
    """The newest segments merged into one (their live rows only), so that at most MAX_SEGMENTS remain.

    Tiered: the merge takes the newest segments needed to get under the limit, and
    then each older one no larger than what is merged so far, so a row is copied
    about log(rows) times over the life of the index, not at every merge.
    """
    entries = meta["segments"]
    sizes = [len(np.load(folder / e["name"] / "rowids.npy", mmap_mode="r")) for e in entries]
    first = min(MAX_SEGMENTS - 1, len(entries) - 2)  # leaves MAX_SEGMENTS at most
    while first > 0 and sizes[first - 1] <= sum(sizes[first:]):
        first -= 1
    merged = _open(folder, dict(meta, segments=entries[first:]))
    parts: dict[str, list[np.ndarray]] = {name: [] for name in NAMES}
    for seg in merged.segments:
        keep = slice(None) if seg.live is None else np.flatnonzero(seg.live)
        for name in NAMES:
            parts[name].append(np.asarray(getattr(seg, name)[keep]))
    rowids = np.concatenate(parts["rowids"])
    order = np.argsort(rowids, kind="stable")
    name = f"seg-{_stamp()}"
    seg_dir = folder / name
    seg_dir.mkdir(parents=True)
    np.save(seg_dir / "rowids.npy", rowids[order])
    for key in ("vectors", "sqnorms"):
        np.save(seg_dir / f"{key}.npy", np.concatenate(parts.pop(key))[order])
    if len(rowids) >= VECTOR_MIN_ROWS and (folder / TRAINED_FILE).exists():
        where = np.empty(len(order), dtype=np.int64)
        where[order] = np.arange(len(order))  # merged position of each concatenated row
        _merge_vectors(folder, merged.segments, where, seg_dir)
    else:
        _index_segment(folder, seg_dir)
    return dict(meta, segments=entries[:first] + [{"name": name}])


def _merge_vectors(folder: Path, segments: list[Segment], where: np.ndarray, seg: Path) -> None:
    """The merged segment's short codes from its sources': their codes moved (all are made with the
    same trained projection and quantiser, so a row's code is the same), dead rows left out;
    sources without codes encode their rows. The error is the largest of the sources'."""
    import faiss

    t0 = time.perf_counter()
    trained = faiss.read_index(str(folder / TRAINED_FILE))
    codes = np.empty((len(where), trained.sa_code_size()), dtype=np.uint8)
    error, at = 0.0, 0
    for source in segments:
        keep = np.arange(len(source)) if source.live is None else np.flatnonzero(source.live)
        dest = where[at : at + len(keep)]
        at += len(keep)
        src = source.short_codes()
        if src is not None:
            rows = np.concatenate([_codes_of(part) for _, part in src])
            codes[dest] = rows[keep]
            error = max(error, source.code_error)
            continue
        for start in range(0, len(keep), CHUNK):
            part = keep[start : start + CHUNK]
            codes[dest[start : start + CHUNK]], err = _encode(trained, source.vectors[part])
            error = max(error, err)
    _write_codes(folder, seg, codes, error)
    log.info("short codes for %d merged faces in %.1fs (%s)", len(codes), time.perf_counter() - t0, seg.name)


def _codes_of(part: Any) -> np.ndarray:
    import faiss

    flat: Any = faiss.downcast_index(part.index)
    return faiss.vector_to_array(flat.codes).reshape(part.ntotal, -1)


def _sweep(folder: Path, meta: dict, grace: float = 600.0) -> None:
    """Remove segments and live masks no manifest names, once no search can still be opening them."""
    used = {e["name"] for e in meta["segments"]} | {e["live"] for e in meta["segments"] if e.get("live")}
    now = time.time()
    for path in folder.iterdir():
        if path.name.startswith(("seg-", "live-")) and path.name not in used:
            try:
                if now - path.stat().st_mtime > grace:
                    shutil.rmtree(path) if path.is_dir() else path.unlink()
            except OSError:
                pass


def build(db, db_path: str | Path, gen: int) -> FaceIndex:
    """The whole index again, as one segment."""
    t0 = time.perf_counter()
    folder = index_dir(db_path)
    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    db.execute("BEGIN")  # one snapshot: the count, the rows and the generation agree
    try:
        gen = store.generation(db)
        n = store.face_count(db)
        name = f"seg-{_stamp()}"
        seg = tmp / name
        seg.mkdir()
        vectors = np.lib.format.open_memmap(seg / "vectors.npy", mode="w+", dtype=np.float32, shape=(n, ENCODING_DIM))
        rowids = np.lib.format.open_memmap(seg / "rowids.npy", mode="w+", dtype=np.int64, shape=(n,))
        sqnorms = np.zeros(n, dtype=np.float32)  # filled chunk by chunk: no second copy of the matrix
        i = 0
        cursor = store.encodings_in_order(db)
        while i < n:
            rows = cursor.fetchmany(65536)
            if not rows:
                break
            k = min(len(rows), n - i)
            rowids[i : i + k] = [r[0] for r in rows[:k]]
            block = np.frombuffer(b"".join(r[1] for r in rows[:k]), dtype="<f4").reshape(k, ENCODING_DIM)
            vectors[i : i + k] = block
            sqnorms[i : i + k] = np.einsum("ij,ij->i", block, block)
            i += k
    finally:
        db.execute("COMMIT")
    vectors.flush()
    rowids.flush()
    del vectors, rowids
    np.save(seg / "sqnorms.npy", sqnorms)
    _index_segment(tmp, seg)
    meta = {"format": INDEX_FORMAT, "generation": gen, "db_id": store.db_id(db), "segments": [{"name": name}]}
    _commit(tmp, meta)
    old = folder.with_name(folder.name + f".old{os.getpid()}")
    if folder.exists():
        folder.rename(old)
    tmp.rename(folder)
    shutil.rmtree(old, ignore_errors=True)
    log.info("built the search index: %d faces in %.1fs (%s)", i, time.perf_counter() - t0, folder)
    return _open(folder, meta)
