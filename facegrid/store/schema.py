"""The schema: tables, named migrations, opening a database, its meta rows."""

from __future__ import annotations

import secrets
import sqlite3
from pathlib import Path
from urllib.parse import quote

import sqlite_utils

from ..errors import StoreError, UsageError

SCHEMA_VERSION = 5  # every step is named in MIGRATIONS below

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
        raise UsageError(f"database {path} does not exist; run collector.py first or pass --db PATH")
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
        raise UsageError(f"database {path} does not exist; run collector.py first or pass --db PATH")
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
        elif "track_faces" in db.table_names():
            _video_tables(db)  # an index added within schema 3 (nothing else changes)
        return
    with db.conn:
        db.execute("BEGIN IMMEDIATE")
        if "meta" in db.table_names():  # another process won the race
            return
        db.table("images").create(IMAGE_COLUMNS, pk="id", not_null={"status"})
        db.table("images").create_index(["status"])
        db.table("faces").create(FACE_COLUMNS, pk=("image_id", "idx"), not_null={"gen"}, defaults={"gen": 0})
        _change_log(db)
        _video_tables(db)
        _people_tables(db)
        db.table("annotated").create({"image_id": str, "jpeg": bytes}, pk="image_id")
        db.table("meta").create({"key": str, "value": str}, pk="key")
        _watch_tables(db)
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


def _video_tables(db: sqlite_utils.Database) -> None:
    """Schema 3: videos, their sampled frames, and the tracks their faces form."""
    db.execute(
        "CREATE TABLE IF NOT EXISTS videos (id TEXT PRIMARY KEY, path TEXT, host TEXT, duration REAL, "
        "fps REAL, frames INTEGER NOT NULL DEFAULT 0, mtime REAL, stored_at REAL)"
    )
    db.execute(
        "CREATE TABLE IF NOT EXISTS frames (image_id TEXT PRIMARY KEY, video_id TEXT NOT NULL, t REAL NOT NULL, "
        "t_end REAL NOT NULL, frame_index INTEGER)"
    )
    db.execute("CREATE INDEX IF NOT EXISTS frames_video ON frames (video_id, t)")
    db.execute(
        "CREATE TABLE IF NOT EXISTS tracks (video_id TEXT NOT NULL, track INTEGER NOT NULL, start_s REAL, "
        "end_s REAL, best_image_id TEXT, best_idx INTEGER, faces INTEGER, PRIMARY KEY (video_id, track))"
    )
    db.execute(
        "CREATE TABLE IF NOT EXISTS track_faces (image_id TEXT NOT NULL, idx INTEGER NOT NULL, "
        "video_id TEXT NOT NULL, track INTEGER, sharpness REAL, PRIMARY KEY (image_id, idx))"
    )
    db.execute("CREATE INDEX IF NOT EXISTS track_faces_track ON track_faces (video_id, track)")


def _watch_tables(db: sqlite_utils.Database) -> None:
    """Schema 5: the watched people and their alerts (facegrid/alerting.py)."""
    db.execute(
        "CREATE TABLE IF NOT EXISTS watches (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE, "
        "source TEXT NOT NULL, person_id INTEGER, mode TEXT NOT NULL, tolerance REAL NOT NULL, "
        "profile BLOB NOT NULL, targets BLOB NOT NULL, target_ids TEXT NOT NULL DEFAULT '[]', "
        "created_at REAL, refreshed_at REAL)"
    )
    db.execute(
        "CREATE TABLE IF NOT EXISTS alerts (watch_id INTEGER NOT NULL, subject TEXT NOT NULL, "
        "image_id TEXT NOT NULL, idx INTEGER NOT NULL, body TEXT NOT NULL, stored_at REAL NOT NULL, "
        "sent_at REAL, PRIMARY KEY (watch_id, subject))"
    )
    db.execute("CREATE INDEX IF NOT EXISTS alerts_unsent ON alerts (stored_at) WHERE sent_at IS NULL")


def _schema_2(db: sqlite_utils.Database) -> None:
    """Schema 2: faces.gen (0 for every old row), deleted_faces, meta db_id."""
    if "gen" not in db["faces"].columns_dict:
        db.execute("ALTER TABLE faces ADD COLUMN gen INTEGER NOT NULL DEFAULT 0")
    _change_log(db)
    if get_meta(db, "db_id") is None:
        db.execute("INSERT INTO meta (key, value) VALUES ('db_id', ?)", [secrets.token_hex(16)])


def _people_tables(db: sqlite_utils.Database) -> None:
    """Schema 4, the people registry: persons (stable ids that are never reused, a name), which
    person each face is in, the faces a user rejected from a person, and the coarse cells the
    registry's neighbour search uses at scale. Nothing of schema 3 changes."""
    db.execute(
        "CREATE TABLE IF NOT EXISTS persons (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT, "
        "created_at REAL NOT NULL, changed_at REAL NOT NULL)"
    )
    db.execute("CREATE INDEX IF NOT EXISTS persons_name ON persons (name COLLATE NOCASE)")
    # person_id NULL: in no person, waiting for the next update (kept_out 0) or kept out for good (1);
    # digest: of the encoding, so a face a re-processed photo changed is assigned again;
    # tolerance: the face's own search tolerance when it was assigned; cell: person_cells, or NULL
    db.execute(
        "CREATE TABLE IF NOT EXISTS person_faces (face_rowid INTEGER PRIMARY KEY, image_id TEXT NOT NULL, "
        "idx INTEGER NOT NULL, person_id INTEGER, kept_out INTEGER NOT NULL DEFAULT 0, digest INTEGER NOT NULL, "
        "tolerance REAL NOT NULL, cell INTEGER)"
    )
    db.execute("CREATE INDEX IF NOT EXISTS person_faces_person ON person_faces (person_id)")
    db.execute("CREATE INDEX IF NOT EXISTS person_faces_face ON person_faces (image_id, idx)")
    db.execute("CREATE INDEX IF NOT EXISTS person_faces_cell ON person_faces (cell)")
    db.execute(
        "CREATE TABLE IF NOT EXISTS person_rejects (person_id INTEGER NOT NULL, image_id TEXT NOT NULL, "
        "idx INTEGER NOT NULL, PRIMARY KEY (person_id, image_id, idx))"
    )
    db.execute("CREATE TABLE IF NOT EXISTS person_cells (cell INTEGER PRIMARY KEY, centroid BLOB NOT NULL)")


# Every schema the database has had, in order: (version, what it adds, the step that adds it).
# Each step is idempotent (CREATE ... IF NOT EXISTS), so a step another process ran already is harmless.
MIGRATIONS = (
    (2, "faces.gen, deleted_faces, meta db_id", _schema_2),
    (3, "videos, frames, tracks, track_faces", _video_tables),
    (4, "people registry: persons, person_faces, person_rejects, person_cells", _people_tables),
    (5, "watches and alerts", _watch_tables),
)


def _migrate(db: sqlite_utils.Database) -> None:
    """Every step of MIGRATIONS the database lacks, in order, in one transaction."""
    with db.conn:
        db.execute("BEGIN IMMEDIATE")
        current = int(get_meta(db, "schema_version") or 0)
        if current >= SCHEMA_VERSION:  # another process did it
            return
        for version, _what, step in MIGRATIONS:
            if version > current:
                step(db)
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
