"""The one writer: checks, the lock, and the errors that end it (the collector)."""

from __future__ import annotations

import fcntl
import os
import socket
import sqlite3
import time
from pathlib import Path

import sqlite_utils

from ..errors import DatabaseInUse, DatabaseUnwritable, StoreError
from .schema import open_db


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
