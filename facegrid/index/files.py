"""The index on disk: where it lives, its manifest, its segment files, and the segments a process keeps open.

Beside the database sits ``<db>.index/``: immutable segments (segment.py), each
a folder named seg-*, live masks live-*.npy, the short codes' trained.faiss
(codes.py), and manifest.json naming the segments, the database generation
they reach, the database's id, and for each segment that newer writes have
touched its live mask and how many of its rows are dead.

A new manifest is written to a temporary name and renamed over the old one, so
a search that runs meanwhile keeps the consistent snapshot it opened; files no
manifest names are removed only after a grace period (sweep).
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import shutil
import tempfile
import time
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ..envelope import ENCODING_DIM
from . import codes
from .search import FaceIndex
from .segment import Segment

INDEX_FORMAT = 5
OPEN_SEGMENTS = 32  # segments a process keeps open between searches


class SegmentCache:
    """What a process keeps open between searches: the segments it opened last, and the threads
    that read their short codes side by side.

    A segment's files never change (a new one gets a new name), so a process that searches
    again reads neither its codes again nor the pages of its rows it has touched before.
    One cache per process (CACHE) is the default; a test that wants to act as a new process
    passes a fresh one."""

    def __init__(self, size: int = OPEN_SEGMENTS):
        self.size = size
        self._opened: collections.OrderedDict[str, Segment] = collections.OrderedDict()
        self._threads: Executor | None = None

    def segment(self, folder: Path, live: Path | None) -> Segment:
        """The segment in folder with this live mask; its short codes read now, so that a damaged
        file is found when the index is loaded, not by a search."""
        key = str(folder)
        seg = self._opened.get(key)
        if seg is None:
            seg = Segment.open(folder)
            seg.short_codes()
            self._opened[key] = seg
            while len(self._opened) > self.size:
                self._opened.popitem(last=False)
        self._opened.move_to_end(key)
        return seg if live is None else seg.with_live(live)

    def threads(self) -> Executor:
        """Threads for reading the parts of short codes side by side (faiss lets go of the GIL)."""
        if self._threads is None:
            self._threads = ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="facegrid-codes")
        return self._threads


CACHE = SegmentCache()  # this process's


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


def manifest(folder: Path) -> dict | None:
    """The manifest in folder, or None when there is none of this format."""
    try:
        meta = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and meta.get("format") == INDEX_FORMAT else None


def open_index(folder: Path, meta: dict, cache: SegmentCache) -> FaceIndex:
    """The index the manifest meta describes, its segments taken from cache."""
    segments = [
        cache.segment(folder / e["name"], folder / e["live"] if e.get("live") else None) for e in meta["segments"]
    ]
    return FaceIndex(segments, meta["generation"], threads=cache.threads())


def write_segment(folder: Path, name: str, rows, layout: codes.CodeLayout) -> int:
    """rows: an iterator of (rowid, encoding blob) in rowid order, written as segment name (with
    its short codes when it is big enough). Returns the count."""
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
    codes.write_for(folder, seg, layout)
    return n


def commit(folder: Path, meta: dict) -> None:
    """meta becomes the index's manifest, in one rename."""
    tmp = folder / f"manifest.json.tmp{os.getpid()}"
    tmp.write_text(json.dumps(meta))
    os.replace(tmp, folder / "manifest.json")


def stamp() -> str:
    """A name part no other segment or mask of any process has."""
    return f"{time.time_ns():x}-{os.getpid()}"


def sweep(folder: Path, meta: dict, grace: float = 600.0) -> None:
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
