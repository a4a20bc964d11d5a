"""The SQLite database: schema, batched upserts keyed by sha256, reads.

Tables (docs/protocol.md has every column):
  images     one row per photo, keyed by the sha256 of its bytes
  faces      one row per face: box, float32 encoding BLOB, small JPEG crop
  annotated  the annotated JPEG of each photo, apart so encodings read fast
  meta       schema_version, generation (bumped by every stored batch), and
             db_id (random, made once: the search index is bound to it)
  deleted_faces  rowids of faces removed by a later result, with the generation
  videos     one row per video file: path, host, duration, fps sampled, frames
  frames     one row per sampled frame sent (its picture is an images row)
  tracks     a video's faces grouped into appearances: span and best face
  track_faces  which track each face of a frame belongs to, with its sharpness
  persons        the people registry (schema 4): one row per person, a stable id and a name
  person_faces   which person each face belongs to (facegrid/registry.py keeps it up to date)
  person_rejects faces a user said are not this person ("reject"): no update puts them back
  person_cells   coarse cells of the faces, for the registry's neighbour search at scale

Every face row carries `gen`, the generation of the batch that last wrote it, so
the search index reads only what changed since it was made (facegrid/index/).

Watched people (schema 5, facegrid/alerting.py):
  watches    a name, where the profile came from, the profile vectors and the
             tolerance the search's rule gave them
  alerts     one row per alert, keyed by watch and photo (or video): the alert
             JSON, and when it was sent (one recorded but not sent yet is sent
             when the collector starts again)
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import secrets
import socket
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import quote

import sqlite_utils

from . import tracks
from .envelope import FRAME_VERSION, Result
from .envelope import VERSION as ENVELOPE_VERSION
from .errors import DatabaseInUse, DatabaseUnwritable, StoreError, UsageError

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


# -- the one writer: checks and lock (the collector) ------------------------------------------------
class WriterLock:
    """The database's writer lock: flock on DB-collector.lock, held for the life of the process
    (on NFS, Linux turns it into a lock the server keeps, so it holds across hosts), with the
    holder's host and pid written in it, so a second collector on the same database refuses at
    once and names the first. The file stays when the lock goes: removing it would let a third
    collector lock a new file while a second still holds the old one."""

    def __init__(self, db_path: Path):
        self.path = Path(f"{db_path}-collector.lock")
        try:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise DatabaseUnwritable(
                f"{self.path}: cannot make the collector's lock file beside the database ({exc.strerror}); "
                "pass --db with a database in a folder this user may write"
            ) from None
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(self.fd, 300, 0).decode("utf-8", "replace").split()
            os.close(self.fd)
            who = (
                f"the collector on host {holder[0]} (pid {holder[1]})"
                if len(holder) >= 2
                else "another collector (starting)"
            )
            raise DatabaseInUse(
                f"database {db_path} is in use by {who}; run one collector per database: "
                "stop that one first, or pass --db with another database"
            ) from None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"{socket.gethostname()} {os.getpid()} {time.time():.0f}\n".encode(), 0)

    def close(self) -> None:
        os.close(self.fd)


def write_problem(path: str | Path) -> str | None:
    """Why this user cannot write the database at path, in words that name the fix; None if it can.

    SQLite writes the database and makes DB-wal and DB-shm beside it (WAL mode), so the folder
    must be writable too. os.access answers for this process's user, and says no on a read-only
    file system even to root."""
    path = Path(path)
    folder = path.parent
    fix = "pass --db with a database this user may write"
    if not folder.is_dir():
        return f"{folder}: the database's folder does not exist; create it, or {fix}"
    file_ro = path.exists() and not os.access(path, os.W_OK)
    folder_ro = not os.access(folder, os.W_OK | os.X_OK)
    who = _user()
    if file_ro and folder_ro:
        return (
            f"database {path} and its folder {folder} are read-only for {who}; the collector writes "
            f"the database and SQLite makes {path.name}-wal and -shm beside it: make both writable, or {fix}"
        )
    if file_ro:
        return f"database {path} is read-only for {who}; make it writable (chmod u+w, chown), or {fix}"
    if folder_ro:
        return (
            f"folder {folder} is read-only for {who}; SQLite makes {path.name}-wal and -shm beside the "
            f"database, and the collector its lock file: make the folder writable, or {fix}"
        )
    return None


def _user() -> str:
    import pwd

    uid = os.geteuid()
    try:
        return f"user {pwd.getpwuid(uid).pw_name}"
    except KeyError:
        return f"uid {uid}"


# SQLite's primary result codes (the low byte) that no retry can mend: the collector stops
READONLY_CODES = {3: "permission denied", 8: "read-only", 14: "cannot open"}  # SQLITE_PERM, READONLY, CANTOPEN
BROKEN_CODES = {10: "disk I/O error", 11: "corrupt", 26: "not a database"}  # SQLITE_IOERR, CORRUPT, NOTADB


def fatal_write_error(exc: sqlite3.Error) -> type[StoreError] | None:
    """The error class to stop with for a failed write, or None when a retry may succeed
    (locked, busy, disk full) or the row itself was refused (a constraint)."""
    code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
    if code in READONLY_CODES:
        return DatabaseUnwritable
    return StoreError if code in BROKEN_CODES else None


def open_for_writing(path: str | Path) -> tuple[sqlite_utils.Database, WriterLock]:
    """The collector's database: refused in one line, before any job is taken, when this user
    cannot write it or its folder, or when another collector holds it; then opened (and
    made) as open_db does, with a write transaction tried at once."""
    path = Path(path)
    problem = write_problem(path)
    if problem:
        raise DatabaseUnwritable(problem)
    db = open_db(path, threads=True)  # another program's database is refused here, before any lock file
    try:
        lock = WriterLock(path)
    except BaseException:
        db.conn.close()
        raise
    try:
        db.execute("PRAGMA busy_timeout=0")  # another writer holding it now proves it writable: no wait
        try:
            db.execute("BEGIN IMMEDIATE")
            db.execute("ROLLBACK")
        except sqlite3.OperationalError as exc:
            kind = fatal_write_error(exc)
            if kind is not None:
                raise kind(f"database {path} cannot be written ({exc}); pass --db with a writable database") from None
        finally:
            db.execute("PRAGMA busy_timeout=30000")
    except BaseException:
        lock.close()
        db.conn.close()
        raise
    return db, lock


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
        "envelope_version": FRAME_VERSION if r.frame else ENVELOPE_VERSION,
    }


def _upsert_sql(table: str, columns: list[str], pk: tuple[str, ...]) -> str:
    cols = ", ".join(f'"{c}"' for c in columns)
    marks = ", ".join("?" for _ in columns)
    updates = ", ".join(f'"{c}" = excluded."{c}"' for c in columns if c not in pk)
    return f'INSERT INTO "{table}" ({cols}) VALUES ({marks}) ON CONFLICT ({", ".join(pk)}) DO UPDATE SET {updates}'


IMAGE_SQL = _upsert_sql("images", list(IMAGE_COLUMNS), ("id",))
FACE_SQL = _upsert_sql("faces", list(FACE_COLUMNS), ("image_id", "idx"))
ANNOTATED_SQL = _upsert_sql("annotated", ["image_id", "jpeg"], ("image_id",))


def store_results(db: sqlite_utils.Database, results: Iterable[Result], video=None) -> int:
    """Upsert a batch in one transaction. A result stored twice changes nothing.

    video: the [video] settings (track rules); the tracks of every video a frame
    of the batch belongs to are made again in the same transaction.
    """
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
        _store_frames(conn, [r for r in results if r.frame], now, video)
        conn.execute("UPDATE meta SET value = ? WHERE key = 'generation'", (str(gen),))
    return len(results)


def _store_frames(conn: sqlite3.Connection, results: list[Result], now: float, video) -> None:
    """Frames, their video's row, the sharpness of their faces, then the video's tracks made again
    from the batch's earliest frame on (the tracks open there read before this batch changes them)."""
    if not results:
        return
    from . import imaging  # here, not at the top: status and buried read the store without OpenCV

    if video is None:
        from .settings import Video

        video = Video()
    touched: dict[str, tuple[Result, dict]] = {}
    since: dict[str, float] = {}  # per video, the earliest frame of this batch
    for r in results:
        f = r.frame
        assert f is not None  # the caller passes frames only
        touched[f["video_id"]] = (r, f)
        since[f["video_id"]] = min(f["t"], since.get(f["video_id"], f["t"]))
    carried = {v: _open_tracks(conn, v, since[v], 1.0 / f["fps"] + video.track_gap) for v, (_, f) in touched.items()}
    for r in results:
        f = r.frame
        assert f is not None
        conn.execute(
            "INSERT INTO frames VALUES (?, ?, ?, ?, ?) ON CONFLICT (image_id) DO UPDATE SET "
            "t_end = max(t_end, excluded.t_end), frame_index = excluded.frame_index",
            (r.id, f["video_id"], f["t"], f["t_end"], f["index"]),
        )
        conn.execute("DELETE FROM track_faces WHERE image_id = ? AND idx >= ?", (r.id, len(r.faces)))
        conn.executemany(
            "INSERT OR REPLACE INTO track_faces (image_id, idx, video_id, track, sharpness) VALUES (?, ?, ?, NULL, ?)",
            [(r.id, i, f["video_id"], imaging.sharpness(face.crop)) for i, face in enumerate(r.faces)],
        )
    for video_id, (r, f) in touched.items():
        conn.execute(
            "INSERT INTO videos (id, path, host, duration, fps, frames, mtime, stored_at) "
            "VALUES (?, ?, ?, ?, ?, 0, ?, ?) ON CONFLICT (id) DO UPDATE SET path = excluded.path, "
            "host = excluded.host, duration = coalesce(excluded.duration, duration), fps = excluded.fps, "
            "mtime = excluded.mtime, stored_at = excluded.stored_at",
            (video_id, r.path, r.host, f.get("duration"), f["fps"], r.mtime, now),
        )
        conn.execute(
            "UPDATE videos SET frames = (SELECT count(*) FROM frames WHERE video_id = ?) WHERE id = ?",
            (video_id, video_id),
        )
        _make_tracks(conn, video_id, f["fps"], video, since[video_id], carried[video_id])


TRACK_FACE_SQL = (  # a video's faces, found through its frames (frames_video: video_id, t)
    "SELECT tf.image_id, tf.idx, fr.t, fr.t_end, f.top, f.right, f.bottom, f.left, f.encoding, tf.sharpness "
    "FROM frames fr JOIN track_faces tf ON tf.image_id = fr.image_id "
    "JOIN faces f ON f.image_id = tf.image_id AND f.idx = tf.idx WHERE fr.video_id = ? "
)
# tracks.best_key in SQL: area x sharpness (none or 0: 1), then area, then the earliest
BEST_ORDER = (
    "ORDER BY max(0, f.right - f.left) * max(0, f.bottom - f.top) * "
    "(CASE WHEN tf.sharpness IS NULL OR tf.sharpness = 0 THEN 1.0 ELSE tf.sharpness END) DESC, "
    "max(0, f.right - f.left) * max(0, f.bottom - f.top) DESC, fr.t ASC LIMIT 1"
)


def _open_tracks(conn: sqlite3.Connection, video_id: str, since: float, reach: float) -> list[tracks.Track]:
    """The stored tracks that may go on past `since` (they start before it and end within reach
    seconds of it), each as of its frames before `since`: its last face, and its start, face count
    and best face before that (from its tracks row, less its faces from `since` on; the best face is
    looked for again only when the stored one lies from `since` on). Read before the batch changes
    track_faces, so the stored rows and the assignments agree."""
    out = []
    before = TRACK_FACE_SQL + "AND fr.t < ? AND tf.track = ? "
    rows = conn.execute(
        "SELECT track, start_s, faces, best_image_id, best_idx FROM tracks "
        "WHERE video_id = ? AND start_s < ? AND end_s >= ?",
        (video_id, since, since - reach - 1e-6),
    ).fetchall()
    for number, start, count, best_id, best_idx in rows:
        key = (video_id, since, number)
        last = conn.execute(before + "ORDER BY fr.t DESC LIMIT 1", key).fetchone()
        if last is None:  # no face of it before `since` any more: it stays as stored
            continue
        (moved,) = conn.execute(
            "SELECT count(*) FROM frames fr JOIN track_faces tf ON tf.image_id = fr.image_id "
            "WHERE fr.video_id = ? AND fr.t >= ? AND tf.track = ?",
            key,
        ).fetchone()
        best = conn.execute(before + "AND tf.image_id = ? AND tf.idx = ?", (*key, best_id, best_idx)).fetchone()
        if best is None:  # the stored best face lies from `since` on: the best of those before it
            best = conn.execute(before + BEST_ORDER, key).fetchone() or last
        earlier = tracks.Earlier(start, count - moved - 1, _frame_face(best))
        out.append(tracks.Track([_frame_face(last)], number, earlier))
    return out


def _make_tracks(
    conn: sqlite3.Connection, video_id: str, fps: float, video, since: float, carried: list[tracks.Track]
) -> None:
    """The video's tracks made again from `since` (its earliest frame in this batch) on.

    Tracks are built in time order, so the faces before `since` keep the tracks they
    have; the tracks open there (`carried`, see _open_tracks) go on, and every face
    from `since` on is assigned again. A batch of the newest frames reads those
    frames' faces and a few rows per open track, not the whole video.
    """
    later = [_frame_face(row) for row in conn.execute(TRACK_FACE_SQL + "AND fr.t >= ?", (video_id, since))]
    found = tracks.build(
        later, 1.0 / fps, video.track_gap, video.track_iou, video.track_distance, video.track_jump, active=carried
    )
    numbers = [tr.number for tr in carried]
    marks = ",".join("?" * len(numbers))
    conn.execute(
        f"DELETE FROM tracks WHERE video_id = ? AND (start_s >= ? OR track IN ({marks}))", (video_id, since, *numbers)
    )
    (top,) = conn.execute("SELECT coalesce(max(track), -1) FROM tracks WHERE video_id = ?", (video_id,)).fetchone()
    top = max([top, *numbers])  # new tracks take numbers above every one kept or carried on
    for tr in found:
        if tr.number is None:
            top += 1
            tr.number = top
        conn.executemany(
            "UPDATE track_faces SET track = ? WHERE image_id = ? AND idx = ?",
            [(tr.number, f.image_id, f.idx) for f in tr.faces if f.t >= since],
        )
        best = tr.best
        conn.execute(
            "INSERT INTO tracks VALUES (?, ?, ?, ?, ?, ?, ?)",
            (video_id, tr.number, tr.start, tr.end, best.image_id, best.idx, tr.count),
        )


def _frame_face(row) -> tracks.FrameFace:
    return tracks.FrameFace(row[0], row[1], row[2], row[3], (row[4], row[5], row[6], row[7]), _vector(row[8]), row[9])


def _vector(blob: bytes):
    import numpy as np

    return np.frombuffer(blob, dtype="<f4").astype(np.float32)


def has_videos(db: sqlite_utils.Database) -> bool:
    return "tracks" in db.table_names()


def face_tracks(db: sqlite_utils.Database, keys: list[tuple[str, int]]) -> dict[tuple[str, int], dict]:
    """(image_id, idx) of frame faces -> their track: video_id, track, start_s, end_s, best face, video path."""
    if not keys or not has_videos(db):
        return {}
    out = {}
    for start in range(0, len(keys), 400):
        part = keys[start : start + 400]
        where = " OR ".join("(tf.image_id = ? AND tf.idx = ?)" for _ in part)
        sql = (
            "SELECT tf.image_id, tf.idx, t.video_id, t.track, t.start_s, t.end_s, t.best_image_id, t.best_idx, "
            "t.faces, v.path, v.host, v.duration FROM track_faces tf "
            "JOIN tracks t ON t.video_id = tf.video_id AND t.track = tf.track "
            f"JOIN videos v ON v.id = t.video_id WHERE {where}"
        )
        for row in db.query(sql, [x for k in part for x in k]):
            out[(row.pop("image_id"), row.pop("idx"))] = row
    return out


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


# -- bulk writes for tools: new databases of many rows that are not results --------------
# The benchmarks fill stores of made-up faces far faster than store_results would; the rows
# still go through the tables declared here (copy_photos, below, is the evaluation's).
BULK_IMAGE_SQL = "INSERT INTO images (id, path, host, status, face_count, width, height) VALUES (?, ?, ?, ?, ?, ?, ?)"
BULK_FACE_SQL = (
    'INSERT INTO faces (image_id, idx, "top", "right", "bottom", "left", encoding, crop, model, gen) '
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def insert_rows(db, images: Iterable[tuple], faces: Iterable[tuple]) -> None:
    """Photos and faces written as given, in the caller's transaction, for a tool filling a new database.

    images: (id, path, host, status, face_count, width, height); faces: (image_id, idx,
    top, right, bottom, left, encoding, crop, model, gen), gen the generation next_generation()
    gave the batch (every face carries the generation of the batch that wrote it)."""
    db.conn.executemany(BULK_IMAGE_SQL, images)
    db.conn.executemany(BULK_FACE_SQL, faces)


def next_generation(db) -> int:
    """Count one more generation (in the caller's transaction) and return it: the rows a tool writes in
    it carry it as their gen, so the index reads them as it reads a stored batch."""
    gen = generation(db) + 1
    db.execute("UPDATE meta SET value = ? WHERE key = 'generation'", [str(gen)])
    return gen


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
    from .textsafe import printable

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


# -- watches and alerts (schema 5; the matching itself is in alerting.py) -----------------------------
WATCH_COLUMNS = "id, name, source, person_id, mode, tolerance, profile, targets, target_ids, created_at, refreshed_at"


def watches(db) -> list[dict]:
    """Every watch, by id, with its profile and target vectors as stored (float32 BLOBs)."""
    if "watches" not in db.table_names():  # a read-only database from before schema 5
        return []
    return list(db.query(f"SELECT {WATCH_COLUMNS} FROM watches ORDER BY id"))


def watch_version(db) -> str:
    """Changes whenever a watch is added, removed or refreshed: the collector reloads its list then."""
    return get_meta(db, "watch_version") or "0"


def _bump_watches(db) -> None:
    db.execute(
        "INSERT INTO meta (key, value) VALUES ('watch_version', '1') "
        "ON CONFLICT (key) DO UPDATE SET value = CAST(value AS INTEGER) + 1"
    )


def save_watch(db, watch: dict) -> int:
    """Add a watch (watch has every WATCH_COLUMNS key but id), or, when one of that name exists,
    replace its profile and tolerance (a refresh). Returns its id."""
    cols = [c.strip() for c in WATCH_COLUMNS.split(",")][1:]
    with db.conn:
        db.execute("BEGIN IMMEDIATE")
        db.execute(
            f"INSERT INTO watches ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))}) ON CONFLICT (name) DO "
            "UPDATE SET mode = excluded.mode, tolerance = excluded.tolerance, profile = excluded.profile, "
            "refreshed_at = excluded.refreshed_at",
            [watch[c] for c in cols],
        )
        _bump_watches(db)
        return db.execute("SELECT id FROM watches WHERE name = ?", [watch["name"]]).fetchone()[0]


def remove_watch(db, name: str) -> bool:
    """Forget a watch (its alerts stay, as they were sent). False when no watch has that name."""
    with db.conn:
        db.execute("BEGIN IMMEDIATE")
        gone = db.execute("DELETE FROM watches WHERE name = ?", [name]).rowcount
        if gone:
            _bump_watches(db)
    return bool(gone)


def alert_counts(db) -> dict[int, tuple[int, float | None]]:
    """Per watch id: how many alerts it gave, and when the last one was stored."""
    sql = "SELECT watch_id, count(*), max(stored_at) FROM alerts GROUP BY watch_id"
    return {row[0]: (row[1], row[2]) for row in db.execute(sql)}


def record_alerts(db, alerts: list[tuple[int, str, str, int, str, float]]) -> list[tuple[int, str, str]]:
    """Record (watch_id, subject, image_id, idx, body, stored_at) rows in one transaction; a watch and
    subject (photo id, or video) that already has an alert keeps it. Returns the new ones as
    (watch_id, subject, body): only those are sent, so a photo stored twice alerts once."""
    new = []
    with db.conn:
        db.execute("BEGIN IMMEDIATE")
        for row in alerts:
            cur = db.execute("INSERT OR IGNORE INTO alerts VALUES (?, ?, ?, ?, ?, ?, NULL)", row)
            if cur.rowcount:
                new.append((row[0], row[1], row[4]))
    return new


def unsent_alerts(db) -> list[tuple[int, str, str]]:
    """(watch_id, subject, body) of alerts recorded but not marked sent (a collector stopped between)."""
    if "alerts" not in db.table_names():
        return []
    sql = "SELECT watch_id, subject, body FROM alerts WHERE sent_at IS NULL ORDER BY stored_at"
    return [tuple(r) for r in db.execute(sql)]


def mark_alerts_sent(db, keys: list[tuple[int, str]]) -> None:
    now = time.time()
    with db.conn:
        db.execute("BEGIN IMMEDIATE")
        db.conn.executemany(
            "UPDATE alerts SET sent_at = ? WHERE watch_id = ? AND subject = ?", [(now, *k) for k in keys]
        )
