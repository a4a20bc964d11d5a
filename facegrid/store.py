"""The SQLite database: schema, batched upserts keyed by sha256, reads.

Tables (docs/protocol.md has every column):
  images     one row per photo, keyed by the sha256 of its bytes
  faces      one row per face: box, float32 encoding BLOB, small JPEG crop
  annotated  the annotated JPEG of each photo, apart so encodings read fast
  meta       schema_version, generation (bumped by every stored batch), and
             db_id (random, made once: the search index is bound to it)
  deleted_faces  rowids of faces removed by a later result, with the generation

Every face row carries `gen`, the generation of the batch that last wrote it, so
the search index reads only what changed since it was made (index.py).
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import quote

import sqlite_utils

from .envelope import VERSION as ENVELOPE_VERSION
from .envelope import Result
from .errors import StoreError, UsageError

SCHEMA_VERSION = 2  # 2: faces.gen, deleted_faces, meta db_id

IMAGE_COLUMNS = {
    "id": str,
    "path": str,
    "host": str,
    "size": int,
    "mtime": float,
    "width": int,
    "height": int,
    "status": str,
    "error": str,
    "face_count": int,
    "settings": str,
    "filter_host": str,
    "filter_pid": int,
    "filter_version": str,
    "timings": str,
    "reencoded": str,
    "attempts": int,
    "queued_at": float,
    "processed_at": float,
    "stored_at": float,
    "envelope_version": int,
}
FACE_COLUMNS = {
    "image_id": str,
    "idx": int,
    "top": int,
    "right": int,
    "bottom": int,
    "left": int,
    "encoding": bytes,
    "crop": bytes,
    "model": str,
    "gen": int,
}


def open_db(path: str | Path, create: bool = True, threads: bool = False) -> sqlite_utils.Database:
    """threads=True: the connection may be used from another thread, one at a time."""
    path = Path(path)
    if not create and not path.exists():
        raise StoreError(f"database {path} does not exist; run collector.py first or pass --db PATH")
    try:
        conn = sqlite3.connect(str(path), timeout=30, isolation_level=None, check_same_thread=not threads)
        db = sqlite_utils.Database(conn)
        tables = set(db.table_names())
        if tables and "meta" not in tables:  # another program's database: change nothing in it
            conn.close()
            raise UsageError(
                f"{path}: not a facegrid database (it has tables {', '.join(sorted(tables))[:80]} "
                "and no facegrid meta table); pass --db with a new or a facegrid database"
            )
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA busy_timeout=30000")
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"cannot open database {path}: {exc}; pass --db with a facegrid database") from None
    ensure_schema(db)
    return db


def open_readonly(path: str | Path) -> sqlite_utils.Database:
    """A facegrid database opened for reading only: nothing in it or beside it changes.

    A copy in a folder this user may not write (no -shm can be made) is opened
    as immutable. A file that is not facegrid's is refused with a UsageError.
    """
    path = Path(path)
    if not path.is_file():
        raise StoreError(f"database {path} does not exist; run collector.py first or pass --db PATH")
    uri = "file:" + quote(str(path.resolve()))
    for extra in ("?mode=ro", "?mode=ro&immutable=1"):
        try:
            conn = sqlite3.connect(uri + extra, uri=True, timeout=30, isolation_level=None)
            conn.execute("PRAGMA query_only=1")
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            break
        except sqlite3.OperationalError as exc:  # no -shm can be made beside it: read it as immutable
            if "immutable" in extra:
                raise StoreError(f"cannot open database {path} for reading: {exc}") from None
        except sqlite3.DatabaseError as exc:
            raise UsageError(
                f"{path}: not a facegrid database ({exc}); pass --db with the database collector.py wrote"
            ) from None
    if not {"meta", "images", "faces", "annotated"} <= tables:
        conn.close()
        raise UsageError(
            f"{path}: not a facegrid database (it has no facegrid tables); pass --db with the "
            "database collector.py wrote"
        )
    db = sqlite_utils.Database(conn)
    version = get_meta(db, "schema_version")
    if version is None or not str(version).isdigit():
        raise UsageError(
            f"{path}: not a facegrid database (no schema_version); pass --db with the database collector.py wrote"
        )
    if int(version) > SCHEMA_VERSION:
        raise StoreError(f"database schema {version} is newer than this facegrid ({SCHEMA_VERSION}); upgrade facegrid")
    return db


def ensure_schema(db: sqlite_utils.Database) -> None:
    """Create the tables, or check that an existing database speaks our schema."""
    if "meta" in db.table_names():
        version = get_meta(db, "schema_version")
        if version is not None and int(version) > SCHEMA_VERSION:
            raise StoreError(
                f"database schema {version} is newer than this facegrid ({SCHEMA_VERSION}); upgrade facegrid"
            )
        if version is not None and int(version) < SCHEMA_VERSION:
            _migrate(db)
        return
    with db.conn:
        db.execute("BEGIN IMMEDIATE")
        if "meta" in db.table_names():  # another process won the race
            return
        db.table("images").create(IMAGE_COLUMNS, pk="id", not_null={"status"})
        db.table("images").create_index(["status"])
        db.table("faces").create(FACE_COLUMNS, pk=("image_id", "idx"), not_null={"gen"}, defaults={"gen": 0})
        _change_log(db)
        db.table("annotated").create({"image_id": str, "jpeg": bytes}, pk="image_id")
        db.table("meta").create({"key": str, "value": str}, pk="key")
        db.table("meta").insert_all(
            [
                {"key": "schema_version", "value": str(SCHEMA_VERSION)},
                {"key": "generation", "value": "0"},
                {"key": "db_id", "value": secrets.token_hex(16)},
            ]
        )


def _change_log(db: sqlite_utils.Database) -> None:
    db.execute("CREATE INDEX IF NOT EXISTS faces_gen ON faces (gen)")
    db.execute("CREATE TABLE IF NOT EXISTS deleted_faces (face_rowid INTEGER NOT NULL, gen INTEGER NOT NULL)")
    db.execute("CREATE INDEX IF NOT EXISTS deleted_faces_gen ON deleted_faces (gen)")


def _migrate(db: sqlite_utils.Database) -> None:
    """Schema 1 -> 2, in one transaction: faces.gen (0 for every old row), deleted_faces, db_id."""
    with db.conn:
        db.execute("BEGIN IMMEDIATE")
        if int(get_meta(db, "schema_version") or 0) >= SCHEMA_VERSION:  # another process did it
            return
        if "gen" not in db["faces"].columns_dict:
            db.execute("ALTER TABLE faces ADD COLUMN gen INTEGER NOT NULL DEFAULT 0")
        _change_log(db)
        if get_meta(db, "db_id") is None:
            db.execute("INSERT INTO meta (key, value) VALUES ('db_id', ?)", [secrets.token_hex(16)])
        db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", [str(SCHEMA_VERSION)])


def get_meta(db: sqlite_utils.Database, key: str) -> str | None:
    row = db.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()
    return row[0] if row else None


def generation(db: sqlite_utils.Database) -> int:
    return int(get_meta(db, "generation") or 0)


def db_id(db: sqlite_utils.Database) -> str | None:
    """A random id made once with the database (None for a database no collector opened since):
    an index made from another database is never taken for it."""
    return get_meta(db, "db_id")


def has_change_log(db: sqlite_utils.Database) -> bool:
    """Whether faces carry their generation (schema 2), so the index can follow in steps."""
    return "deleted_faces" in db.table_names()


def _image_row(r: Result, now: float) -> dict:
    f = r.filter or {}
    return {
        "id": r.id,
        "path": r.path,
        "host": r.host,
        "size": r.size,
        "mtime": r.mtime,
        "width": r.width,
        "height": r.height,
        "status": r.status,
        "error": r.error,
        "face_count": len(r.faces),
        "settings": json.dumps(r.settings, sort_keys=True),
        "filter_host": f.get("host"),
        "filter_pid": f.get("pid"),
        "filter_version": f.get("version"),
        "timings": json.dumps(r.timings, sort_keys=True),
        "reencoded": json.dumps(r.reencoded) if r.reencoded else None,
        "attempts": r.attempts,
        "queued_at": r.queued_at,
        "processed_at": r.processed_at,
        "stored_at": now,
        "envelope_version": ENVELOPE_VERSION,
    }


def _upsert_sql(table: str, columns: list[str], pk: tuple[str, ...]) -> str:
    cols = ", ".join(f'"{c}"' for c in columns)
    marks = ", ".join("?" for _ in columns)
    updates = ", ".join(f'"{c}" = excluded."{c}"' for c in columns if c not in pk)
    return f'INSERT INTO "{table}" ({cols}) VALUES ({marks}) ON CONFLICT ({", ".join(pk)}) DO UPDATE SET {updates}'


IMAGE_SQL = _upsert_sql("images", list(IMAGE_COLUMNS), ("id",))
FACE_SQL = _upsert_sql("faces", list(FACE_COLUMNS), ("image_id", "idx"))
ANNOTATED_SQL = _upsert_sql("annotated", ["image_id", "jpeg"], ("image_id",))


def store_results(db: sqlite_utils.Database, results: Iterable[Result]) -> int:
    """Upsert a batch in one transaction. A result stored twice changes nothing."""
    results = list(results)
    now = time.time()
    conn = db.conn
    with conn:
        conn.execute("BEGIN IMMEDIATE")
        gen = generation(db) + 1
        conn.executemany(IMAGE_SQL, [tuple(_image_row(r, now).values()) for r in results])
        faces, annotated = [], []
        for r in results:
            model = (r.settings or {}).get("model", "hog")
            for i, face in enumerate(r.faces):
                faces.append((r.id, i, *face.box, face.encoding.astype("<f4").tobytes(), face.crop, model, gen))
            gone = (r.id, len(r.faces))
            conn.execute(
                "INSERT INTO deleted_faces SELECT rowid, ? FROM faces WHERE image_id = ? AND idx >= ?", (gen, *gone)
            )
            conn.execute("DELETE FROM faces WHERE image_id = ? AND idx >= ?", gone)
            if r.annotated:
                annotated.append((r.id, r.annotated))
        conn.executemany(FACE_SQL, faces)
        conn.executemany(ANNOTATED_SQL, annotated)
        conn.execute("UPDATE meta SET value = ? WHERE key = 'generation'", (str(gen),))
    return len(results)


def counts(db: sqlite_utils.Database) -> dict[str, int]:
    out = {"images": 0, "faces": 0, "ok": 0, "no_faces": 0, "error": 0}
    for status, n in db.execute("SELECT status, count(*) FROM images GROUP BY status"):
        out[status] = n
        out["images"] += n
    out["faces"] = db.execute("SELECT count(*) FROM faces").fetchone()[0]
    return out


# -- reads the other modules make (every query of the schema lives in this module) -------------------
def annotated_jpeg(db, image_id: str) -> bytes | None:
    """The stored annotated copy of a photo, or None (none stored, or stored empty)."""
    row = db.execute("SELECT jpeg FROM annotated WHERE image_id = ?", [image_id]).fetchone()
    return row[0] if row and row[0] else None


def annotated_ids(db) -> list[str]:
    """Every photo with an annotated copy, by id."""
    return [r[0] for r in db.execute("SELECT image_id FROM annotated ORDER BY image_id")]


def ids_starting(db, prefix: str, limit: int = 2) -> list[str]:
    """Stored photo ids that start with prefix (lowercase hex), at most limit of them."""
    sql = "SELECT id FROM images WHERE id >= ? AND id < ? ORDER BY id LIMIT ?"
    return [r[0] for r in db.execute(sql, [prefix, prefix + "g", limit])]


def face_crop(db, image_id: str, idx: int) -> bytes | None:
    """The stored crop of one face, or None."""
    row = db.execute("SELECT crop FROM faces WHERE image_id = ? AND idx = ?", [image_id, idx]).fetchone()
    return row[0] if row else None


def faces_with_photos(db):
    """(image_id, idx, encoding, crop, path, host) of every stored face, in path order."""
    return db.execute(
        "SELECT f.image_id, f.idx, f.encoding, f.crop, i.path, i.host FROM faces f "
        "JOIN images i ON i.id = f.image_id ORDER BY i.path, f.image_id, f.idx"
    )


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


def changes_since(db, since: int) -> tuple[list, list[int]]:
    """(rowid, encoding) of faces written after generation `since`, and the rowids deleted since."""
    changed = db.execute("SELECT rowid, encoding FROM faces WHERE gen > ? ORDER BY rowid", [since]).fetchall()
    deleted = [r[0] for r in db.execute("SELECT face_rowid FROM deleted_faces WHERE gen > ?", [since])]
    return changed, deleted


def stored_status(db_path: str, image_id: str) -> tuple[str, str | None] | None:
    """(status, error) of one photo, read without changing the database; None if not stored or unreadable."""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30)
    try:
        return conn.execute("SELECT status, error FROM images WHERE id = ?", [image_id]).fetchone()
    except sqlite3.Error:
        return None
    finally:
        conn.close()
