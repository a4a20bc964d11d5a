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
nearest first as far as the caller needs them, each with its exact distance.
A segment of VECTOR_MIN_ROWS rows or more also has a vector index beside its rows
(ivf.faiss: a faiss inverted file of NLIST cells with 8-bit scalar-quantised
codes, 1.3 GB for 10,000,000 faces, memory-mapped when opened). Its candidates
are the KNN_FIRST nearest codes in the NPROBE cells nearest the profile (4x more
each time the caller asks for more); every candidate is re-ranked exactly from
its float32 row (only the candidates' rows are read from the memory map), the
same way as on the exact path, so where the candidates hold every face that
decides the answer, the answer equals the exact scan's. Smaller segments (the new
faces of an update, small merged tails) are scanned whole, exactly. The switch
sits at 100,000 rows because there the scan takes about 10-20 ms a pass (0.1-0.2
us a row on 2 cores), the cost of a probe of the vector index, while building
the vector index for a segment costs about 3 s a million rows; an update of
10,000 faces so never builds one. The cells are trained once per index
(trained.faiss, on the first segment big enough) and every later segment's
vector index reuses them: a new segment's costs only the adding of its rows, and
a merged segment's is made by moving its sources' codes cell by cell
(_merge_vectors), adding only the rows of sources that had none.

The vector index is approximate: a face whose cell is not among the probed ones
is missed. docs/benchmarks.md ("Archive scale") counts how many searches return
exactly the exact scan's answer; EXACT = True scans every segment (the bench and
the tests compare the two paths with it).

Distances are Euclidean, as face_recognition's face_distance:
|a - b|^2 = |a|^2 + |b|^2 - 2 a.b, computed in chunks so memory stays flat.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from . import store
from .envelope import ENCODING_DIM

log = logging.getLogger("facegrid.index")
CHUNK = 262_144  # rows per step: 128 MB of float32 at most in flight
INDEX_FORMAT = 4
MAX_SEGMENTS = 8
MAX_DEAD_SHARE = 0.1
NAMES = ("vectors", "sqnorms", "rowids")
VECTOR_MIN_ROWS = 100_000  # segments this big get a vector index (smaller ones are scanned)
VECTOR_FILE = "ivf.faiss"
TRAINED_FILE = "trained.faiss"  # the trained cells every segment's vector index starts from
NLIST = 2048  # cells (fewer when trained on fewer than 39 rows a cell)
NPROBE = 128  # cells probed per search vector
KNN_FIRST = 256  # neighbours asked of a vector index first (4x more until the search is settled)
SQ_MARGIN = 0.03  # added to the radius for the quantised distances (their error measured at most 0.012)
EXACT = False  # True: scan every segment, vector indexes unused (tests and the bench compare)


class Segment:
    """One immutable part of the index, with the rows still live in it."""

    def __init__(self, folder: Path, live: Path | None = None):
        self.folder: Path | None = folder  # None: arrays in memory (FaceIndex.from_arrays)
        self.vectors, self.sqnorms, self.rowids = (np.load(folder / f"{n}.npy", mmap_mode="r") for n in NAMES)
        self.live = np.load(live, mmap_mode="r") if live is not None else None
        if self.live is not None and self.live.shape != self.rowids.shape:
            raise ValueError(f"live mask {live} does not fit segment {folder.name}")
        self._ivf = None

    def __len__(self) -> int:
        return len(self.rowids)

    def vector_index(self):
        """This segment's faiss index (memory-mapped), or None when it has none."""
        if self._ivf is None and self.folder is not None and (self.folder / VECTOR_FILE).exists():
            import faiss

            self._ivf = faiss.read_index(str(self.folder / VECTOR_FILE), faiss.IO_FLAG_MMAP)
            if self._ivf.ntotal != len(self):
                raise ValueError(f"vector index of segment {self.folder.name} does not fit its rows")
        return self._ivf

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
        """(positions, approximate distances, complete): rows that may lie within radius of a target.

        Every row within `complete` (<= radius) of a target is among them. From the
        vector index: the k nearest of each target in the probed cells by their 8-bit
        codes, so complete is the k-th one's distance less SQ_MARGIN; from a scan
        (no vector index, or EXACT): every row, exact, complete up to the radius.
        """
        ivf = None if EXACT else self.vector_index()
        if ivf is not None:
            ivf.nprobe = NPROBE
            k = min(k, ivf.ntotal)
            d2, found = ivf.search(np.ascontiguousarray(targets), k)
            ended = (found[:, -1] < 0) | (d2[:, -1] > (radius + SQ_MARGIN) ** 2)
            complete = radius if k >= ivf.ntotal or ended.all() else float(np.sqrt(d2[~ended, -1].min())) - SQ_MARGIN
            ok = (found >= 0) & (d2 <= (radius + SQ_MARGIN) ** 2)
            return found[ok].astype(np.int64), np.sqrt(np.maximum(d2[ok], 0)), max(complete, 0.0)
        limit = (radius + 1e-3) ** 2
        pos, dist = [], []
        for start, d2 in self.scan(targets):
            hit = np.flatnonzero(d2 <= limit)
            pos.append(hit + start)
            dist.append(np.sqrt(np.maximum(d2[hit], 0)))
        if not pos:
            return np.zeros(0, np.int64), np.zeros(0, np.float32), radius
        return np.concatenate(pos), np.concatenate(dist), radius


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
        self.vectors = Rows(segments)
        self.rowids = Ids(segments)

    @classmethod
    def from_arrays(cls, vectors: np.ndarray, sqnorms: np.ndarray, rowids: np.ndarray, generation: int = 0):
        """An index over arrays in memory (no files): for tests and tools."""
        seg = Segment.__new__(Segment)
        seg.folder, seg.vectors, seg.sqnorms, seg.rowids = None, vectors, sqnorms, rowids
        seg.live, seg._ivf = None, None
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

        mode as in distances(). Segments with a vector index give candidates by
        their 8-bit codes (unless EXACT), the others are scanned; every candidate's
        distance is then computed from its float32 row, the same way on both paths.
        settled(near, r), if given, is asked about the faces within r < radius as
        soon as every face within r is known (nearest first, KNN_FIRST neighbours
        and 4x more each time): when it says they are enough, those are returned.
        """
        targets = _profile(targets, mode)
        k = KNN_FIRST
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
                return near
            k *= 4

    def _rerank(self, targets: np.ndarray, positions: list, approx: list, radius: float) -> Near:
        """Exact distances of the candidates that may lie within radius; those within it, by position."""
        pos = np.concatenate(positions) if positions else np.zeros(0, np.int64)
        rough = np.concatenate(approx) if approx else np.zeros(0, np.float32)
        pos = np.unique(pos[rough <= radius + SQ_MARGIN])
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
    segments = [Segment(folder / e["name"], folder / e["live"] if e.get("live") else None) for e in meta["segments"]]
    return FaceIndex(segments, meta["generation"])


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
    """Write seg's vector index when it has VECTOR_MIN_ROWS rows or more (training the cells first
    if the index folder has none yet)."""
    vectors = np.load(seg / "vectors.npy", mmap_mode="r")
    n = len(vectors)
    if n < VECTOR_MIN_ROWS:
        return
    import faiss

    t0 = time.perf_counter()
    trained = folder / TRAINED_FILE
    if trained.exists():
        ivf = faiss.read_index(str(trained))
    else:
        cells = max(1, min(NLIST, n // 39))
        take = np.sort(np.random.default_rng(0).choice(n, min(n, 64 * cells), replace=False))
        ivf = faiss.index_factory(ENCODING_DIM, f"IVF{cells},SQ8")
        ivf.train(np.ascontiguousarray(vectors[take]))
        tmp = folder / f"{TRAINED_FILE}.tmp{os.getpid()}"
        faiss.write_index(ivf, str(tmp))
        os.replace(tmp, trained)
    for start in range(0, n, CHUNK):
        ivf.add(np.ascontiguousarray(vectors[start : start + CHUNK]))
    faiss.write_index(ivf, str(seg / VECTOR_FILE))
    log.info("vector index for %d faces written in %.1fs (%s)", n, time.perf_counter() - t0, seg.name)


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
    """The merged segment's vector index from its sources': their codes moved list by list (all share
    the trained cells, so a row's code is the same), dead rows left out; sources without one add rows."""
    import faiss
    from faiss.contrib.inspect_tools import get_invlist

    t0 = time.perf_counter()
    whole = faiss.read_index(str(folder / TRAINED_FILE))
    ivf = faiss.extract_index_ivf(whole)  # a view of `whole`, which must stay referenced
    lists = ivf.invlists
    if lists is None:
        raise ValueError(f"{folder / TRAINED_FILE} holds no inverted lists")
    at = 0
    for source in segments:
        live = np.ones(len(source), dtype=bool) if source.live is None else np.asarray(source.live)
        new = np.full(len(source), -1, dtype=np.int64)
        new[live] = where[at : at + int(live.sum())]
        at += int(live.sum())
        src = source.vector_index()
        if src is None:
            keep = np.flatnonzero(live)
            for start in range(0, len(keep), CHUNK):
                part = keep[start : start + CHUNK]
                ivf.add_with_ids(np.ascontiguousarray(source.vectors[part]), np.ascontiguousarray(new[part]))
            continue
        for cell in range(src.nlist):
            ids, codes = get_invlist(src.invlists, cell)
            ids = new[ids]
            kept = ids >= 0
            if kept.any():
                ids, codes = np.ascontiguousarray(ids[kept]), np.ascontiguousarray(codes[kept])
                lists.add_entries(cell, len(ids), faiss.swig_ptr(ids), faiss.swig_ptr(codes))
        ivf.ntotal += int(live.sum())
    faiss.write_index(whole, str(seg / VECTOR_FILE))
    log.info("vector index for %d merged faces in %.1fs (%s)", ivf.ntotal, time.perf_counter() - t0, seg.name)


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
