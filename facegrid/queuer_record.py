"""The queuer's record: which files it put on the tube, by path and by sha256, in a small SQLite file.

A second run over the same folders queues only what is new or changed (unless
--requeue); a video interrupted mid-way resumes after the last frame put. One
queuer per record: a lock file next to it.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import time

from .errors import FacegridError, UsageError
from .settings import Beanstalkd, Settings, state_dir
from .walking import display_path

log = logging.getLogger("facegrid.queuer")
OLD_DEFAULT_STATE = "facegrid-queuer.sqlite"  # the default before it moved to the user's state folder


def default_state(b: Beanstalkd) -> str:
    """The queuer's record when [queuer] state is empty: per user, keyed by the beanstalkd address
    and the images tube, so a run from any working folder finds what an earlier run queued."""
    key = "".join(c if c.isalnum() or c in ".-" else "_" for c in f"{b.host}-{b.port}-{b.images_tube}")
    return str(state_dir() / f"queuer-{key}.sqlite")


def state_path(settings: Settings) -> str:
    """[queuer] state (or --state), else default_state, whose folder is made here (mode 700)."""
    if settings.queuer.state:
        return settings.queuer.state
    path = default_state(settings.beanstalkd)
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    except OSError as exc:
        raise UsageError(
            f"{os.path.dirname(path)}: cannot make the queuer's state folder ({exc.strerror}); "
            "set $XDG_STATE_HOME, or pass --state PATH"
        ) from None
    if os.path.exists(OLD_DEFAULT_STATE) and not (os.path.exists(path) and os.path.samefile(OLD_DEFAULT_STATE, path)):
        log.warning(
            "%s in this folder is an older queuer's record; it is no longer read by default: "
            "pass --state %s to go on from it",
            OLD_DEFAULT_STATE,
            OLD_DEFAULT_STATE,
        )
    return path


class State:
    """What this queuer has put on the tube, keyed by path and by sha256."""

    def __init__(self, path: str):
        fix = "pass --state PATH in a folder this user may write"
        try:  # one queuer per state file: a second one stops at once instead of waiting on SQLite's lock
            self.lock = os.open(path + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise UsageError(
                f"{display_path(path)}.lock: cannot write the queuer's state ({exc.strerror}); {fix}"
            ) from None
        try:
            fcntl.flock(self.lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self.lock)
            raise FacegridError(
                f"{display_path(path)}: another queuer is using this state file; wait for it "
                "to finish, or give this one its own with --state PATH"
            ) from None
        try:
            self.conn = sqlite3.connect(path, timeout=30)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute(
                "CREATE TABLE IF NOT EXISTS files (path BLOB PRIMARY KEY, size INTEGER, "
                "mtime_ns INTEGER, sha256 TEXT, queued_at REAL)"
            )
            self.conn.execute("CREATE INDEX IF NOT EXISTS files_sha256 ON files (sha256)")
            # a video being queued: the time of the last frame put, so an interrupted run resumes there
            self.conn.execute("CREATE TABLE IF NOT EXISTS video_progress (sha256 TEXT PRIMARY KEY, t REAL)")
        except sqlite3.Error as exc:
            raise UsageError(f"{display_path(path)}: cannot use the queuer's state file ({exc}); {fix}") from None
        self.pending = 0

    def unchanged(self, path: str, st: os.stat_result) -> bool:
        row = self.conn.execute("SELECT size, mtime_ns FROM files WHERE path = ?", (os.fsencode(path),)).fetchone()
        return row is not None and row[0] == st.st_size and row[1] == st.st_mtime_ns

    def has_id(self, sha: str) -> bool:
        return self.conn.execute("SELECT 1 FROM files WHERE sha256 = ? LIMIT 1", (sha,)).fetchone() is not None

    def record(self, path: str, st: os.stat_result, sha: str) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?)",
            (os.fsencode(path), st.st_size, st.st_mtime_ns, sha, time.time()),
        )
        self.pending += 1
        if self.pending >= 200:
            self.commit()

    def commit(self) -> None:
        self.conn.commit()
        self.pending = 0

    def video_resume(self, sha: str) -> float:
        """The time of the last frame of this video put by an earlier, interrupted run (-1: none)."""
        row = self.conn.execute("SELECT t FROM video_progress WHERE sha256 = ?", (sha,)).fetchone()
        return float(row[0]) if row else -1.0

    def video_put(self, sha: str, t: float) -> None:
        self.conn.execute("INSERT OR REPLACE INTO video_progress VALUES (?, ?)", (sha, t))
        self.pending += 1
        if self.pending >= 50:
            self.commit()

    def video_done(self, sha: str) -> None:
        self.conn.execute("DELETE FROM video_progress WHERE sha256 = ?", (sha,))
