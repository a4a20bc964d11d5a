"""What facegrid/registry.py reads and writes to bring the persons up to date."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from ..errors import StoreError
from .persons import _touch, has_registry, registry_generation
from .schema import FACE_COLUMNS, generation
from .videos import _vector, has_videos


# -- what facegrid/registry.py reads and writes to bring the persons up to date ------------------------
@dataclasses.dataclass
class RegistryChanges:
    """What changed since the registry's last update, read in one snapshot.

    new: (rowid, image_id, idx, encoding) of the faces to assign: stored since (every photo face and
      each video track's best face, as --people clusters), a face whose encoding a re-processed photo
      changed, and faces waiting since a rejection; removed: registry rows of faces deleted or changed
      since (and rows written again: faces waiting); rejects: rowid of a new face -> the persons it was
      rejected from; known: person ids; left: faces that left their person (deleted or changed).
    """

    since: int | None
    generation: int
    new: list[tuple[int, str, int, bytes]]
    removed: list[int]
    rejects: dict[int, set[int]]
    known: set[int]
    left: int = 0


def encoding_digest(blob: bytes) -> int:
    """A signed 64-bit digest of an encoding's bytes (person_faces.digest)."""
    import hashlib

    return int.from_bytes(hashlib.blake2b(blob, digest_size=8).digest(), "big", signed=True)


def _people_faces_where(alias: str) -> str:
    """A face --people clusters: a photo's, or a video track's best face."""
    return (
        f"(NOT EXISTS (SELECT 1 FROM frames fr WHERE fr.image_id = {alias}.image_id) OR EXISTS "
        f"(SELECT 1 FROM tracks t WHERE t.best_image_id = {alias}.image_id AND t.best_idx = {alias}.idx))"
    )


def registry_changes(db) -> RegistryChanges:
    """The registry's work since its last update (see RegistryChanges), read in one transaction."""
    with db.conn:
        db.execute("BEGIN")
        since = registry_generation(db)
        gen = generation(db)
        where = f"f.gen > {int(since)}" if since is not None else "1"
        if has_videos(db):
            where += " AND " + _people_faces_where("f")
        changed = db.execute(f"SELECT f.rowid, f.image_id, f.idx, f.encoding FROM faces f WHERE {where}").fetchall()
        removed: set[int] = set()
        if since is not None:
            deleted = db.execute("SELECT face_rowid FROM deleted_faces WHERE gen > ?", [since]).fetchall()
            removed = {r[0] for r in deleted}
        known_rows = {}
        for start in range(0, len(changed), 500):
            part = [r[0] for r in changed[start : start + 500]]
            sql = f"SELECT face_rowid, digest FROM person_faces WHERE face_rowid IN ({','.join('?' * len(part))})"
            known_rows.update(dict(db.execute(sql, part).fetchall()))
        new = []
        for rowid, image_id, idx, blob in changed:
            if rowid in known_rows and rowid not in removed and known_rows[rowid] == encoding_digest(blob):
                continue  # stored again as it was: it keeps its person
            if rowid in known_rows:
                removed.add(rowid)
            new.append((rowid, image_id, idx, blob))
        waiting = db.execute(
            "SELECT f.rowid, f.image_id, f.idx, f.encoding FROM person_faces pf "
            "JOIN faces f ON f.rowid = pf.face_rowid AND f.image_id = pf.image_id AND f.idx = pf.idx "
            "WHERE pf.person_id IS NULL AND pf.kept_out = 0"
        ).fetchall()
        if has_videos(db):  # a track whose best face changed since: its new best face, in no person yet
            waiting += db.execute(
                "SELECT f.rowid, f.image_id, f.idx, f.encoding FROM tracks t JOIN faces f "
                "ON f.image_id = t.best_image_id AND f.idx = t.best_idx "
                "LEFT JOIN person_faces pf ON pf.face_rowid = f.rowid WHERE pf.face_rowid IS NULL"
            ).fetchall()
        seen = {r[0] for r in new}
        new += [r for r in waiting if r[0] not in seen and r[0] not in removed]
        left = len(removed)
        removed.update(r[0] for r in waiting)  # their rows are written again with their new person
        by_key = {(image_id, idx): rowid for rowid, image_id, idx, _ in new}
        resolved: dict[int, set[int]] = {}
        for pid, image_id, idx in db.execute("SELECT person_id, image_id, idx FROM person_rejects"):
            if (image_id, idx) in by_key:
                resolved.setdefault(by_key[(image_id, idx)], set()).add(pid)
        known = {r[0] for r in db.execute("SELECT id FROM persons")}
    return RegistryChanges(since, gen, new, sorted(removed), resolved, known, left)


def registry_members(db, cells: list[int] | None = None):
    """The faces in a person now: (rowids int64, person ids int64, tolerances float32, cells int64
    (-1: none), photo ids list, encodings float32 n x 128), in rowid order; only those of these
    cells when cells is given. Faces a re-processed photo removed are left out."""
    import numpy as np

    sql = (
        "SELECT pf.face_rowid, pf.person_id, pf.tolerance, coalesce(pf.cell, -1), pf.image_id, f.encoding "
        "FROM person_faces pf JOIN faces f ON f.rowid = pf.face_rowid AND f.image_id = pf.image_id "
        "AND f.idx = pf.idx WHERE pf.person_id IS NOT NULL"
    )
    params: list = []
    if cells is not None:
        sql += f" AND pf.cell IN ({','.join('?' * len(cells))})"
        params = list(cells)
    rows = db.execute(sql + " ORDER BY pf.face_rowid", params).fetchall()
    n = len(rows)
    rowids = np.fromiter((r[0] for r in rows), np.int64, n)
    owners = np.fromiter((r[1] for r in rows), np.int64, n)
    tols = np.fromiter((r[2] for r in rows), np.float32, n)
    cell = np.fromiter((r[3] for r in rows), np.int64, n)
    photos = [r[4] for r in rows]
    enc = np.frombuffer(b"".join(r[5] for r in rows), "<f4").reshape(n, -1) if n else np.zeros((0, 128), np.float32)
    return rowids, owners, tols, cell, photos, enc.astype(np.float32)


def registry_counts(db) -> tuple[int, int]:
    """(faces in a person, of those how many have no cell yet)."""
    row = db.execute(
        "SELECT count(*), coalesce(sum(cell IS NULL), 0) FROM person_faces WHERE person_id IS NOT NULL"
    ).fetchone()
    return int(row[0]), int(row[1])


def photo_persons(db, image_ids: list[str]) -> list[tuple[int, str, int]]:
    """(person_id, image_id, face_rowid) of every face of these photos that is in a person."""
    out = []
    for start in range(0, len(image_ids), 500):
        part = image_ids[start : start + 500]
        sql = (
            "SELECT person_id, image_id, face_rowid FROM person_faces WHERE person_id IS NOT NULL "
            f"AND image_id IN ({','.join('?' * len(part))})"
        )
        out += db.execute(sql, part).fetchall()
    return out


def registry_cells(db):
    """The coarse cells' centroids (float32 cells x 128), or None while the registry has none."""
    import numpy as np

    rows = db.execute("SELECT centroid FROM person_cells ORDER BY cell").fetchall() if has_registry(db) else []
    return np.stack([_vector(r[0]) for r in rows]) if rows else None


def set_registry_cells(db, centroids, assigned: list[tuple[int, int]]) -> None:
    """Store the coarse cells' centroids and (rowid, cell) of every face in a person, in one transaction."""
    with db.conn:
        db.execute("BEGIN IMMEDIATE")
        db.execute("DELETE FROM person_cells")
        db.conn.executemany(
            "INSERT INTO person_cells VALUES (?, ?)", [(i, c.astype("<f4").tobytes()) for i, c in enumerate(centroids)]
        )
        db.conn.executemany("UPDATE person_faces SET cell = ? WHERE face_rowid = ?", [(c, r) for r, c in assigned])


@dataclasses.dataclass
class Assignment:
    """One face's place after an update: person is a person id, or a new person's key (< 0)."""

    rowid: int
    image_id: str
    idx: int
    person: int
    digest: int
    tolerance: float
    cell: int | None = None


def apply_registry_update(
    db, changes: RegistryChanges, assigned: list[Assignment], new_keys: list[int], typical: float | None = None
) -> dict:
    """Write an update in one transaction: drop changes.removed, make one person per key of new_keys
    (in that order: ids rise with it), write every assignment, and record the generation reached
    and, if given, the collection's typical d_k (meta people_typical_dk, registry_typical).

    Raises StoreError when another update ran since `changes` was read (run it again). A face assigned to
    a person that was merged or forgotten meanwhile waits for the next update. Returns {key: new id}.
    """
    now = time.time()
    with db.conn:
        db.execute("BEGIN IMMEDIATE")
        if registry_generation(db) != changes.since:
            raise StoreError("the people registry was updated by another process meanwhile; run the update again")
        db.conn.executemany("DELETE FROM person_faces WHERE face_rowid = ?", [(r,) for r in changes.removed])
        ids = {}
        for key in new_keys:
            cur = db.execute("INSERT INTO persons (name, created_at, changed_at) VALUES (NULL, ?, ?)", [now, now])
            ids[key] = cur.lastrowid
        alive = {r[0] for r in db.execute("SELECT id FROM persons")}
        rows = []
        for a in assigned:
            person = ids.get(a.person, a.person)
            rows.append(
                (a.rowid, a.image_id, a.idx, person if person in alive else None, a.digest, a.tolerance, a.cell)
            )
        db.conn.executemany(
            "INSERT OR REPLACE INTO person_faces (face_rowid, image_id, idx, person_id, kept_out, digest, tolerance, "
            "cell) VALUES (?, ?, ?, ?, 0, ?, ?, ?)",
            rows,
        )
        touched = {r[3] for r in rows if r[3] is not None} - set(ids.values())
        _touch(db, sorted(touched))
        upsert = "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value"
        db.execute(upsert, ["people_generation", str(changes.generation)])
        if typical:
            db.execute(upsert, ["people_typical_dk", repr(float(typical))])
    return ids


def copy_photos(db, source: str | Path, ids: list[str]) -> int:
    """Store these photos of another facegrid database (rows and faces) as one new batch: for tools that
    replay a collection in steps (scripts/evaluate.py). Returns the faces copied."""
    db.execute("ATTACH DATABASE ? AS src", [str(source)])
    try:
        db.execute("CREATE TEMP TABLE IF NOT EXISTS keep (id TEXT PRIMARY KEY)")
        with db.conn:
            db.execute("BEGIN IMMEDIATE")
            db.execute("DELETE FROM temp.keep")
            db.conn.executemany("INSERT OR IGNORE INTO temp.keep VALUES (?)", [(i,) for i in ids])
            gen = generation(db) + 1
            db.execute("INSERT OR REPLACE INTO images SELECT * FROM src.images WHERE id IN (SELECT id FROM temp.keep)")
            cols = ", ".join(f'"{c}"' for c in FACE_COLUMNS if c != "gen")
            n = db.execute(
                f"INSERT OR REPLACE INTO faces ({cols}, gen) SELECT {cols}, ? FROM src.faces "
                "WHERE image_id IN (SELECT id FROM temp.keep)",
                [gen],
            ).rowcount
            db.execute("UPDATE meta SET value = ? WHERE key = 'generation'", [str(gen)])
    finally:
        db.execute("DETACH DATABASE src")
    return n
