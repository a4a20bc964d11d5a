"""Reads the other modules make: every query of the photo and face tables."""

from __future__ import annotations

import sqlite_utils

from .schema import open_readonly
from .videos import _vector, has_videos


def face_row(db: sqlite_utils.Database, image_id: str, idx: int) -> dict | None:
    """One stored face with its box and crop."""
    rows = list(
        db.query(
            'SELECT image_id, idx, top, "right", bottom, "left", crop FROM faces WHERE image_id = ? AND idx = ?',
            [image_id, idx],
        )
    )
    return rows[0] if rows else None


def people_faces(db: sqlite_utils.Database):
    """Faces for --people: every photo's, and of a video only each track's best face (one per
    appearance), with the video's path and the span: (image_id, idx, encoding, crop, path, host,
    start_s, end_s), start_s and end_s None for a photo."""
    if not has_videos(db):  # a database from before schema 3: photos only
        return db.execute(
            "SELECT f.image_id, f.idx, f.encoding, f.crop, i.path, i.host, NULL, NULL FROM faces f "
            "JOIN images i ON i.id = f.image_id ORDER BY i.path, f.image_id, f.idx"
        )
    return db.execute(
        "SELECT f.image_id, f.idx, f.encoding, f.crop, coalesce(v.path, i.path), i.host, t.start_s, t.end_s "
        "FROM faces f JOIN images i ON i.id = f.image_id LEFT JOIN frames fr ON fr.image_id = f.image_id "
        "LEFT JOIN tracks t ON t.best_image_id = f.image_id AND t.best_idx = f.idx "
        "LEFT JOIN videos v ON v.id = fr.video_id WHERE fr.image_id IS NULL OR t.track IS NOT NULL "
        "ORDER BY coalesce(v.path, i.path), t.start_s, f.image_id, f.idx"
    )


def counts(db: sqlite_utils.Database) -> dict[str, int]:
    """Stored pictures by status (photos and sampled video frames), faces, videos and frames."""
    out = {"images": 0, "faces": 0, "ok": 0, "no_faces": 0, "error": 0, "videos": 0, "frames": 0}
    for status, n in db.execute("SELECT status, count(*) FROM images GROUP BY status"):
        out[status] = n
        out["images"] += n
    out["faces"] = db.execute("SELECT count(*) FROM faces").fetchone()[0]
    if has_videos(db):  # a database from before schema 3 has no videos
        out["videos"] = db.execute("SELECT count(*) FROM videos").fetchone()[0]
        out["frames"] = db.execute("SELECT count(*) FROM frames").fetchone()[0]
    return out


# -- reads the other modules make (every query of the schema lives in this module) -------------------
def annotated_jpeg(db, image_id: str) -> bytes | None:
    """The stored annotated copy of a photo, or None (none stored, or stored empty)."""
    row = db.execute("SELECT jpeg FROM annotated WHERE image_id = ?", [image_id]).fetchone()
    return row[0] if row and row[0] else None


def annotated_ids(db) -> list[str]:
    """Every photo with an annotated copy, by id."""
    return [r[0] for r in db.execute("SELECT image_id FROM annotated ORDER BY image_id")]


def image_shape(db, image_id: str) -> tuple[int, int, int] | None:
    """(width, height, face_count) of a stored photo, or None."""
    row = db.execute("SELECT width, height, face_count FROM images WHERE id = ?", [image_id]).fetchone()
    return None if row is None else (int(row[0] or 0), int(row[1] or 0), int(row[2] or 0))


def problems(db) -> list[dict]:
    """Photos that failed (status error) or showed no face (no_faces), by path: id, path, host,
    status, error, settings (JSON text), stored_at. Sampled video frames without a face are
    left out (most frames show none); a video that could not be read is an error row and is in."""
    frames = "AND id NOT IN (SELECT image_id FROM frames)" if has_videos(db) else ""
    sql = (
        "SELECT id, path, host, status, error, settings, stored_at FROM images "
        f"WHERE status IN ('error', 'no_faces') {frames} ORDER BY status, path, id"
    )
    return list(db.query(sql))


def ids_starting(db, prefix: str, limit: int = 2) -> list[str]:
    """Stored photo ids that start with prefix (lowercase hex), at most limit of them."""
    sql = "SELECT id FROM images WHERE id >= ? AND id < ? ORDER BY id LIMIT ?"
    return [r[0] for r in db.execute(sql, [prefix, prefix + "g", limit])]


def face_crop(db, image_id: str, idx: int) -> bytes | None:
    """The stored crop of one face, or None."""
    row = db.execute("SELECT crop FROM faces WHERE image_id = ? AND idx = ?", [image_id, idx]).fetchone()
    return row[0] if row else None


def face_rows(db, rowids: list[int]) -> dict[int, dict]:
    """Faces by rowid, with their box, crop and photo's path and host."""
    out = {}
    for start in range(0, len(rowids), 500):
        part = rowids[start : start + 500]
        sql = (
            "SELECT f.rowid AS rowid, f.image_id, f.idx, f.top, f.right, f.bottom, f.left, f.crop, i.path, i.host "
            f"FROM faces f JOIN images i ON i.id = f.image_id WHERE f.rowid IN ({','.join('?' * len(part))})"
        )
        for row in db.query(sql, part):
            out[row["rowid"]] = row
    return out


def face_count(db) -> int:
    return db.execute("SELECT count(*) FROM faces").fetchone()[0]


def encodings_in_order(db):
    """(rowid, encoding) of every stored face, in rowid order (a cursor)."""
    return db.execute("SELECT rowid, encoding FROM faces ORDER BY rowid")


# No ORDER BY: with it SQLite scans every face in rowid order instead of searching
# faces_gen for the few new ones (docs/benchmarks.md, "Archive scale"); changes_since sorts them.
CHANGED_SQL = "SELECT rowid, encoding FROM faces WHERE gen > ?"


def changes_since(db, since: int) -> tuple[list, list[int]]:
    """(rowid, encoding) of faces written after generation `since` in rowid order, and the rowids deleted since."""
    changed = sorted(db.execute(CHANGED_SQL, [since]).fetchall())
    deleted = [r[0] for r in db.execute("SELECT face_rowid FROM deleted_faces WHERE gen > ?", [since])]
    return changed, deleted


def stored_status(db_path: str, image_id: str) -> tuple[str, str | None] | None:
    """(status, error) of one photo, read without changing the database (open_readonly); None if not stored."""
    db = open_readonly(db_path)
    try:
        return db.execute("SELECT status, error FROM images WHERE id = ?", [image_id]).fetchone()
    finally:
        db.conn.close()


# -- reads the web pages make (facegrid/web) ------------------------------------------------------
def photo(db, image_id: str) -> dict | None:
    """One stored photo (or video frame): path, host, upright size, status, face count; None if not stored."""
    row = db.execute(
        "SELECT id, path, host, width, height, status, error, face_count, stored_at FROM images WHERE id = ?",
        [image_id],
    ).fetchone()
    keys = ("id", "path", "host", "width", "height", "status", "error", "face_count", "stored_at")
    return dict(zip(keys, row, strict=True)) if row else None


def photo_faces(db, image_id: str) -> list[dict]:
    """The faces of one photo, by index, with their boxes in the photo's original pixels."""
    sql = 'SELECT idx, top, "right", bottom, "left" FROM faces WHERE image_id = ? ORDER BY idx'
    return [dict(zip(("idx", "top", "right", "bottom", "left"), r, strict=True)) for r in db.execute(sql, [image_id])]


def face_encoding(db, image_id: str, idx: int):
    """One stored face's encoding (float32, 128) and crop, or None: a search can start from it."""
    row = db.execute("SELECT encoding, crop FROM faces WHERE image_id = ? AND idx = ?", [image_id, idx]).fetchone()
    return (_vector(row[0]), row[1] or b"") if row else None
