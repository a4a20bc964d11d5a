"""The people registry's persons: reads, names and corrections (schema 4)."""

from __future__ import annotations

import time

from ..errors import UsageError
from .schema import get_meta
from .videos import _vector, has_videos

# -- the people registry (schema 4; kept up to date by facegrid/registry.py) -------------------------
# Reads work on a read-only database and on one from before schema 4 (no persons there). Writes are
# made only by `facegrid people`, search.py --people and the collector, each in one transaction.
NAME_MAX = 100  # characters in a person's name


def has_registry(db) -> bool:
    return "persons" in db.table_names()


def _person_dict(row) -> dict:
    pid, name, created_at, changed_at, faces, photos = row
    return {
        "id": pid,
        "name": name,
        "faces": faces,
        "photos": photos,
        "created_at": created_at,
        "changed_at": changed_at,
    }


PERSON_SQL = (
    "SELECT p.id, p.name, p.created_at, p.changed_at, count(f.rowid), count(DISTINCT f.image_id) FROM persons p "
    "LEFT JOIN person_faces pf ON pf.person_id = p.id "
    "LEFT JOIN faces f ON f.rowid = pf.face_rowid AND f.image_id = pf.image_id AND f.idx = pf.idx "
)


def persons(db) -> list[dict]:
    """Every person: {"id", "name" (None until named), "faces", "photos", "created_at", "changed_at"},
    most faces first, then by id. Faces a re-processed photo removed are not counted."""
    if not has_registry(db):
        return []
    rows = db.execute(PERSON_SQL + "GROUP BY p.id ORDER BY count(f.rowid) DESC, p.id").fetchall()
    return [_person_dict(r) for r in rows]


def get_person(db, person_id: int) -> dict | None:
    """One person as persons() gives it, or None."""
    if not has_registry(db):
        return None
    row = db.execute(PERSON_SQL + "WHERE p.id = ? GROUP BY p.id", [int(person_id)]).fetchone()
    return _person_dict(row) if row else None


def find_person(db, name_or_id: str | int) -> dict:
    """The one person a user means: an id (12, #12, person-012) or a name (exact, else ignoring case).

    Raises UsageError (exit 2, one line) when nothing or more than one person matches.
    """
    text = str(name_or_id).strip()
    digits = text.removeprefix("#").removeprefix("person-")
    if digits.isdigit():
        found = get_person(db, int(digits))
        if found is not None:
            return found
    matches: list[int] = []
    if has_registry(db) and text:
        matches = [r[0] for r in db.execute("SELECT id FROM persons WHERE name = ? ORDER BY id", [text])]
        if not matches:
            sql = "SELECT id FROM persons WHERE name = ? COLLATE NOCASE ORDER BY id"
            matches = [r[0] for r in db.execute(sql, [text])]
    if not matches:
        raise UsageError(
            f"no person {printable_name(text)!r} in the registry; `facegrid people list` shows the ids and names"
        )
    if len(matches) > 1:
        ids = ", ".join(str(m) for m in matches)
        raise UsageError(f"{len(matches)} persons are named {printable_name(text)!r} (ids {ids}); pass the id instead")
    found = get_person(db, matches[0])
    assert found is not None
    return found


def printable_name(name: str) -> str:
    from ..textsafe import printable

    return printable(name)[:NAME_MAX]


def person_faces(db, person_id: int, crops: bool = False) -> list[dict]:
    """A person's stored faces: {"face_rowid", "image_id", "idx", "top", "right", "bottom", "left", "path",
    "host", "video_id"} (video_id: the video of a sampled frame, else None), and "crop" with crops=True;
    by path, photo and face. Faces a re-processed photo removed are not listed."""
    if not has_registry(db):
        return []
    crop = ", f.crop" if crops else ""
    video = "fr.video_id" if has_videos(db) else "NULL"
    frames = "LEFT JOIN frames fr ON fr.image_id = f.image_id " if has_videos(db) else ""
    sql = (
        f'SELECT f.rowid, f.image_id, f.idx, f.top, f."right", f.bottom, f."left", i.path, i.host, {video}{crop} '
        "FROM person_faces pf JOIN faces f ON f.rowid = pf.face_rowid AND f.image_id = pf.image_id "
        f"AND f.idx = pf.idx JOIN images i ON i.id = f.image_id {frames}"
        "WHERE pf.person_id = ? ORDER BY i.path, f.image_id, f.idx"
    )
    keys = ["face_rowid", "image_id", "idx", "top", "right", "bottom", "left", "path", "host", "video_id", "crop"]
    return [dict(zip(keys, row, strict=False)) for row in db.execute(sql, [int(person_id)])]


def person_encodings(db, person_id: int):
    """(faces as person_faces() gives them, float32 matrix of their encodings, one row each)."""
    import numpy as np

    faces = person_faces(db, person_id)
    rows = face_encodings(db, [f["face_rowid"] for f in faces])
    keep = [f for f in faces if f["face_rowid"] in rows]
    mat = np.stack([rows[f["face_rowid"]] for f in keep]) if keep else np.zeros((0, 128), np.float32)
    return keep, mat


def person_cover(db, person_id: int) -> dict | None:
    """The face to show a person by: its largest (ties: the first by path), as person_faces(crops=True)
    gives it; None for a person with no stored face."""
    faces = person_faces(db, person_id, crops=True)
    if not faces:
        return None
    return max(faces, key=lambda f: (f["right"] - f["left"]) * (f["bottom"] - f["top"]))


def face_encodings(db, rowids: list[int]) -> dict:
    """Encodings of faces by rowid (float32 vectors)."""
    out = {}
    for start in range(0, len(rowids), 500):
        part = rowids[start : start + 500]
        sql = f"SELECT rowid, encoding FROM faces WHERE rowid IN ({','.join('?' * len(part))})"
        for rowid, blob in db.execute(sql, part):
            out[rowid] = _vector(blob)
    return out


def persons_of_faces(db, keys: list[tuple[str, int]]) -> dict[tuple[str, int], dict]:
    """(image_id, idx) -> {"id", "name"} of the person each face is in; faces in none are left out."""
    if not keys or not has_registry(db):
        return {}
    out = {}
    for start in range(0, len(keys), 400):
        part = keys[start : start + 400]
        where = " OR ".join("(pf.image_id = ? AND pf.idx = ?)" for _ in part)
        sql = (
            "SELECT pf.image_id, pf.idx, p.id, p.name FROM person_faces pf JOIN persons p ON p.id = pf.person_id "
            f"WHERE {where}"
        )
        for image_id, idx, pid, name in db.execute(sql, [x for k in part for x in k]):
            out[(image_id, idx)] = {"id": pid, "name": name}
    return out


def registry_map(db) -> dict[tuple[str, int], int]:
    """(image_id, idx) -> person id of every face in a person."""
    if not has_registry(db):
        return {}
    rows = db.execute("SELECT image_id, idx, person_id FROM person_faces WHERE person_id IS NOT NULL")
    return {(image_id, idx): pid for image_id, idx, pid in rows}


def registry_typical(db) -> float:
    """The collection's typical d_k the registry's updates use (0.0: none yet)."""
    value = get_meta(db, "people_typical_dk") if has_registry(db) else None
    return float(value) if value else 0.0


def registry_generation(db) -> int | None:
    """The database generation the registry was last brought up to (None: never made)."""
    value = get_meta(db, "people_generation") if has_registry(db) else None
    return None if value is None else int(value)


def _check_name(name: str) -> str:
    name = " ".join(str(name).split())
    if not name or len(name) > NAME_MAX or not name.isprintable():
        raise UsageError(f"name {printable_name(name)!r}: give 1 to {NAME_MAX} printable characters")
    return name


def _writing(db, person_ids: list[int]) -> None:
    """Start a write transaction (the caller's `with db.conn:`) and check every person exists."""
    db.execute("BEGIN IMMEDIATE")
    for pid in person_ids:
        if db.execute("SELECT 1 FROM persons WHERE id = ?", [int(pid)]).fetchone() is None:
            raise UsageError(f"no person {pid} in the registry; `facegrid people list` shows the ids")


def _touch(db, person_ids) -> None:
    db.conn.executemany("UPDATE persons SET changed_at = ? WHERE id = ?", [(time.time(), int(p)) for p in person_ids])


def name_person(db, person_id: int, name: str) -> dict:
    """Give a person a name (any printable text; two persons may share one). Returns the person."""
    name = _check_name(name)
    with db.conn:
        _writing(db, [person_id])
        db.execute("UPDATE persons SET name = ?, changed_at = ? WHERE id = ?", [name, time.time(), int(person_id)])
    found = get_person(db, person_id)
    assert found is not None
    return found


def merge_persons(db, into: int, others: list[int]) -> dict:
    """Move every face (and every rejection) of the others into `into`, then remove the others.

    `into` keeps its id; it keeps its name, or takes the first name among the others when it has none.
    """
    others = [int(o) for o in dict.fromkeys(others) if int(o) != int(into)]
    if not others:
        raise UsageError("merge needs two different person ids, as in: facegrid people merge 3 7")
    marks = ",".join("?" * len(others))
    with db.conn:
        _writing(db, [into, *others])
        db.execute(f"UPDATE person_faces SET person_id = ? WHERE person_id IN ({marks})", [int(into), *others])
        db.execute(
            f"INSERT OR IGNORE INTO person_rejects SELECT ?, image_id, idx FROM person_rejects "
            f"WHERE person_id IN ({marks})",
            [int(into), *others],
        )
        db.execute(f"DELETE FROM person_rejects WHERE person_id IN ({marks})", others)
        names = [
            r[0] for r in db.execute(f"SELECT name FROM persons WHERE id IN ({marks}) AND name IS NOT NULL", others)
        ]
        if names:
            db.execute("UPDATE persons SET name = coalesce(name, ?) WHERE id = ?", [names[0], int(into)])
        db.execute(f"DELETE FROM persons WHERE id IN ({marks})", others)
        _touch(db, [into])
    found = get_person(db, into)
    assert found is not None
    return found


def _member_rowids(db, person_id: int, faces: list[tuple[str, int]]) -> list[int]:
    rowids = []
    for image_id, idx in faces:
        row = db.execute(
            "SELECT face_rowid FROM person_faces WHERE person_id = ? AND image_id = ? AND idx = ?",
            [int(person_id), image_id, int(idx)],
        ).fetchone()
        if row is None:
            raise UsageError(
                f"face {image_id[:16]}:{idx} is not in person {person_id}; "
                f"`facegrid people show {person_id}` lists its faces"
            )
        rowids.append(row[0])
    return rowids


def split_person(db, person_id: int, faces: list[tuple[str, int]]) -> dict:
    """Move these faces (image_id, idx) of a person into a new, unnamed person; returns the new person."""
    if not faces:
        raise UsageError("split needs the faces to move, as in: facegrid people split 3 0d4b9c1e:0")
    with db.conn:
        _writing(db, [person_id])
        rowids = _member_rowids(db, person_id, faces)
        now = time.time()
        new_id = db.execute("INSERT INTO persons (name, created_at, changed_at) VALUES (NULL, ?, ?)", [now, now])
        new_id = new_id.lastrowid
        db.conn.executemany("UPDATE person_faces SET person_id = ? WHERE face_rowid = ?", [(new_id, r) for r in rowids])
        _touch(db, [person_id])
    found = get_person(db, new_id)
    assert found is not None
    return found


def reject_faces(db, person_id: int, faces: list[tuple[str, int]]) -> int:
    """ "Not this person": these faces leave the person, and no later update puts them back in it (the
    next update assigns them elsewhere by the usual rule). Returns how many faces left."""
    if not faces:
        raise UsageError("reject needs the faces, as in: facegrid people reject 3 0d4b9c1e:0")
    with db.conn:
        _writing(db, [person_id])
        rowids = _member_rowids(db, person_id, faces)
        db.conn.executemany(
            "INSERT OR IGNORE INTO person_rejects VALUES (?, ?, ?)", [(int(person_id), i, int(x)) for i, x in faces]
        )
        db.conn.executemany("UPDATE person_faces SET person_id = NULL WHERE face_rowid = ?", [(r,) for r in rowids])
        _touch(db, [person_id])
    return len(rowids)


def forget_person(db, person_id: int) -> int:
    """Remove a person and its name; its faces are kept out of every person from then on (the photos
    stay stored and searchable; faces stored later form persons as usual). Returns its face count."""
    with db.conn:
        _writing(db, [person_id])
        n = db.execute(
            "UPDATE person_faces SET person_id = NULL, kept_out = 1 WHERE person_id = ?", [int(person_id)]
        ).rowcount
        db.execute("DELETE FROM person_rejects WHERE person_id = ?", [int(person_id)])
        db.execute("DELETE FROM persons WHERE id = ?", [int(person_id)])
    return n
