"""A memory-mapped matrix of every stored encoding, for fast search.

Beside the database sits ``<db>.index/``: vectors.npy (float32 N x 128),
sqnorms.npy (float32 N, the squared norms) and rowids.npy (int64 N, faces.rowid),
plus meta.json with the database generation they were built from. The collector
bumps the generation with every batch, so a stale index is rebuilt on the next
search. Distances are Euclidean, as face_recognition's face_distance:
|a - b|^2 = |a|^2 + |b|^2 - 2 a.b, computed in chunks so memory stays flat.
"""

from __future__ import annotations

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
INDEX_FORMAT = 1


class FaceIndex:
    def __init__(self, vectors: np.ndarray, sqnorms: np.ndarray, rowids: np.ndarray, generation: int):
        self.vectors, self.sqnorms, self.rowids, self.generation = vectors, sqnorms, rowids, generation

    def __len__(self) -> int:
        return len(self.rowids)

    def distances(self, targets: np.ndarray, mode: str) -> np.ndarray:
        """Distance of every stored face to the target profile.

        mode "min": to the nearest target encoding; "mean": to their mean.
        """
        targets = np.atleast_2d(np.asarray(targets, dtype=np.float32))
        if mode == "mean":
            targets = targets.mean(axis=0, keepdims=True)
        tnorm = (targets ** 2).sum(axis=1)
        out = np.empty(len(self), dtype=np.float32)
        for start in range(0, len(self), CHUNK):
            d2 = self.vectors[start:start + CHUNK] @ targets.T  # in place from here: no temporaries
            d2 *= -2.0
            d2 += self.sqnorms[start:start + CHUNK, None]
            d2 += tnorm[None, :]
            d2.min(axis=1, out=out[start:start + CHUNK])
        np.maximum(out, 0, out=out)
        return np.sqrt(out, out=out)


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


def load(db, db_path: str | Path) -> FaceIndex:
    """The index for this database, rebuilt first if the database changed."""
    folder = index_dir(db_path)
    gen = store.generation(db)
    try:
        meta = json.loads((folder / "meta.json").read_text())
        ident = store.db_id(db)  # the generation alone would take another database's index for this one's
        if (meta.get("generation") == gen and meta.get("format") == INDEX_FORMAT
                and ident is not None and meta.get("db_id") == ident):
            return FaceIndex(*(np.load(folder / f"{n}.npy", mmap_mode="r") for n in ("vectors", "sqnorms", "rowids")), gen)
    except (OSError, ValueError):
        pass
    return build(db, db_path, gen)


def build(db, db_path: str | Path, gen: int) -> FaceIndex:
    t0 = time.perf_counter()
    folder = index_dir(db_path)
    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    db.execute("BEGIN")  # one snapshot: the count, the rows and the generation agree
    gen = store.generation(db)
    n = db.execute("SELECT count(*) FROM faces").fetchone()[0]
    vectors = np.lib.format.open_memmap(tmp / "vectors.npy", mode="w+", dtype=np.float32, shape=(n, ENCODING_DIM))
    rowids = np.lib.format.open_memmap(tmp / "rowids.npy", mode="w+", dtype=np.int64, shape=(n,))
    sqnorms = np.zeros(n, dtype=np.float32)  # filled chunk by chunk: no second copy of the matrix
    i = 0
    cursor = db.execute("SELECT rowid, encoding FROM faces ORDER BY rowid")
    while i < n:
        rows = cursor.fetchmany(65536)
        if not rows:
            break
        k = min(len(rows), n - i)
        rowids[i:i + k] = [r[0] for r in rows[:k]]
        block = np.frombuffer(b"".join(r[1] for r in rows[:k]), dtype="<f4").reshape(k, ENCODING_DIM)
        vectors[i:i + k] = block
        sqnorms[i:i + k] = np.einsum("ij,ij->i", block, block)
        i += k
    db.execute("COMMIT")
    np.save(tmp / "sqnorms.npy", sqnorms[:i])
    vectors.flush(), rowids.flush()
    del vectors, rowids
    (tmp / "meta.json").write_text(json.dumps({"generation": gen, "format": INDEX_FORMAT, "count": i,
                                               "db_id": store.db_id(db)}))
    old = folder.with_name(folder.name + f".old{os.getpid()}")
    if folder.exists():
        folder.rename(old)
    tmp.rename(folder)
    shutil.rmtree(old, ignore_errors=True)
    log.info("built the search index: %d faces in %.1fs (%s)", i, time.perf_counter() - t0, folder)
    return FaceIndex(*(np.load(folder / f"{n}.npy", mmap_mode="r") for n in ("vectors", "sqnorms", "rowids")), gen)
