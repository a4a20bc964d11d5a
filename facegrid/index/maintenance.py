"""Keeping the index up to date with the database, in steps: build, update, merge.

Opening an index reads no row of it: every array is memory-mapped, the live
masks included, and the rowids of all segments are addressed in place (no
concatenated copy), so bringing the index up to date costs the changed rows and
the masks of the segments they touch, not the size of the index.

Bringing the index up to date reads only the faces written since its
generation (faces.gen, an indexed column) and those deleted since
(deleted_faces): they become one new segment, and the rows they replace are
cleared in the older segments' live masks (a new mask file, never rewritten in
place). When more than MAX_SEGMENTS pile up, the newest are merged into one,
tiered (merge_tail): each older segment joins only when it is no larger than
what is merged so far, so a row is copied about log(rows) times in the index's
life, never the big first segment for a small tail. When a tenth of the rows
are dead, or the database is not the one the index was made from, the index is
built again whole.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path

import numpy as np

from .. import store
from ..envelope import ENCODING_DIM
from . import codes, files
from .codes import CodeLayout
from .files import CACHE, SegmentCache
from .search import FaceIndex
from .segment import NAMES, Segment

log = logging.getLogger("facegrid.index")
MAX_SEGMENTS = 8
MAX_DEAD_SHARE = 0.1
FETCH = 65_536  # rows read from the database per step of a build


def load(db, db_path: str | Path, layout: CodeLayout | None = None, cache: SegmentCache = CACHE) -> FaceIndex:
    """The index for this database, brought up to date first if the database changed.

    layout: which segments get short codes (the default's unless a test says otherwise);
    cache: the segments this process keeps open (files.CACHE unless a test acts as a new process)."""
    layout = layout or CodeLayout()
    folder = files.index_dir(db_path)
    gen = store.generation(db)
    meta = files.manifest(folder)
    ident = store.db_id(db)  # the generation alone would take another database's index for this one's
    if meta and ident is not None and meta.get("db_id") == ident:
        try:
            if meta["generation"] == gen:
                return files.open_index(folder, meta, cache)
            if store.has_change_log(db) and meta["generation"] < gen:
                return update(db, db_path, folder, meta, layout, cache)
        except (OSError, ValueError, KeyError) as exc:
            log.warning("search index in %s is unreadable (%s); building it again", folder, exc)
    return build(db, db_path, gen, layout, cache)


def update(
    db, db_path: str | Path, folder: Path, meta: dict, layout: CodeLayout | None = None, cache: SegmentCache = CACHE
) -> FaceIndex:
    """Add the faces written since meta's generation as a new segment; mark what they replace."""
    layout = layout or CodeLayout()
    t0 = time.perf_counter()
    db.execute("BEGIN")  # one snapshot: the generation, the changed rows and the deletions agree
    try:
        gen = store.generation(db)
        changed, deleted = store.changes_since(db, meta["generation"])
    finally:
        db.execute("COMMIT")
    stamp = files.stamp()
    name = f"seg-{stamp}"
    added = files.write_segment(folder, name, changed, layout) if changed else 0
    gone = np.unique(np.asarray([r for r, _ in changed] + deleted, dtype=np.int64))
    entries, dead_total, total = _mark_dead(folder, meta["segments"], gone, stamp)
    if added:
        entries.append({"name": name})
        total += added
    new = dict(meta, generation=gen, segments=entries)
    if dead_total > MAX_DEAD_SHARE * max(total, 1):
        shutil.rmtree(folder / name, ignore_errors=True)
        return build(db, db_path, gen, layout, cache)
    if len(entries) > MAX_SEGMENTS:
        new = merge_tail(folder, new, layout, cache)
    files.commit(folder, new)
    files.sweep(folder, new)
    log.info(
        "updated the search index: %d new or changed face(s), %d deleted, in %.2fs (%s)",
        len(changed),
        len(deleted),
        time.perf_counter() - t0,
        folder,
    )
    return files.open_index(folder, new, cache)


def _mark_dead(folder: Path, segments: list[dict], gone: np.ndarray, stamp: str) -> tuple[list[dict], int, int]:
    """(entries, dead rows, rows): the manifest's segment entries with the rows gone cleared in new
    live masks (only the segments that hold one of them get a new mask)."""
    entries, dead_total, total = [], 0, 0
    for k, entry in enumerate(segments):
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
    return entries, dead_total, total


def merge_tail(folder: Path, meta: dict, layout: CodeLayout, cache: SegmentCache = CACHE) -> dict:
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
    merged = files.open_index(folder, dict(meta, segments=entries[first:]), cache)
    name = f"seg-{files.stamp()}"
    seg_dir = folder / name
    _write_merged(merged.segments, seg_dir, folder, layout)
    return dict(meta, segments=entries[:first] + [{"name": name}])


def _write_merged(segments: list[Segment], seg_dir: Path, folder: Path, layout: CodeLayout) -> None:
    """The live rows of segments as one new segment in seg_dir, in rowid order, with short codes
    moved from the sources' where they have them."""
    parts: dict[str, list[np.ndarray]] = {name: [] for name in NAMES}
    for seg in segments:
        keep = slice(None) if seg.live is None else np.flatnonzero(seg.live)
        for name in NAMES:
            parts[name].append(np.asarray(getattr(seg, name)[keep]))
    rowids = np.concatenate(parts["rowids"])
    order = np.argsort(rowids, kind="stable")
    seg_dir.mkdir(parents=True)
    np.save(seg_dir / "rowids.npy", rowids[order])
    for key in ("vectors", "sqnorms"):
        np.save(seg_dir / f"{key}.npy", np.concatenate(parts.pop(key))[order])
    if len(rowids) >= layout.min_rows and (folder / codes.TRAINED_FILE).exists():
        where = np.empty(len(order), dtype=np.int64)
        where[order] = np.arange(len(order))  # merged position of each concatenated row
        codes.merge(folder, segments, where, seg_dir, layout)
    else:
        codes.write_for(folder, seg_dir, layout)


def build(
    db, db_path: str | Path, gen: int, layout: CodeLayout | None = None, cache: SegmentCache = CACHE
) -> FaceIndex:
    """The whole index again, as one segment."""
    layout = layout or CodeLayout()
    t0 = time.perf_counter()
    folder = files.index_dir(db_path)
    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    name = f"seg-{files.stamp()}"
    seg = tmp / name
    seg.mkdir()
    db.execute("BEGIN")  # one snapshot: the count, the rows and the generation agree
    try:
        gen = store.generation(db)
        count = _fill(db, seg, store.face_count(db))
    finally:
        db.execute("COMMIT")
    codes.write_for(tmp, seg, layout)
    meta = {"format": files.INDEX_FORMAT, "generation": gen, "db_id": store.db_id(db), "segments": [{"name": name}]}
    files.commit(tmp, meta)
    old = folder.with_name(folder.name + f".old{os.getpid()}")
    if folder.exists():
        folder.rename(old)
    tmp.rename(folder)
    shutil.rmtree(old, ignore_errors=True)
    log.info("built the search index: %d faces in %.1fs (%s)", count, time.perf_counter() - t0, folder)
    return files.open_index(folder, meta, cache)


def _fill(db, seg: Path, n: int) -> int:
    """Write the segment files of the database's first n faces (in rowid order) into seg, chunk by
    chunk straight into memory-mapped files: no second copy of the matrix. Returns the count."""
    vectors = np.lib.format.open_memmap(seg / "vectors.npy", mode="w+", dtype=np.float32, shape=(n, ENCODING_DIM))
    rowids = np.lib.format.open_memmap(seg / "rowids.npy", mode="w+", dtype=np.int64, shape=(n,))
    sqnorms = np.zeros(n, dtype=np.float32)
    i = 0
    cursor = store.encodings_in_order(db)
    while i < n:
        rows = cursor.fetchmany(FETCH)
        if not rows:
            break
        k = min(len(rows), n - i)
        rowids[i : i + k] = [r[0] for r in rows[:k]]
        block = np.frombuffer(b"".join(r[1] for r in rows[:k]), dtype="<f4").reshape(k, ENCODING_DIM)
        vectors[i : i + k] = block
        sqnorms[i : i + k] = np.einsum("ij,ij->i", block, block)
        i += k
    vectors.flush()
    rowids.flush()
    del vectors, rowids
    np.save(seg / "sqnorms.npy", sqnorms)
    return i
