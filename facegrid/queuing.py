"""The queuer: folders -> one job per photo (and per sampled video frame) on the images tube.

It never writes, moves or renames the user's files. Its own state (which
files it queued) lives in a small SQLite file, so a second run over the same
folders queues only what is new or changed, unless --requeue is given.
"""

from __future__ import annotations

import collections
import fcntl
import hashlib
import logging
import os
import sqlite3
import sys
import time
from collections.abc import Callable

from . import envelope, imaging, video
from .backlog import Backlog
from .envelope import ImageJob
from .errors import ConfigError, FacegridError, ImageUnreadable, UsageError
from .log import HOST
from .queue import Queue
from .settings import Beanstalkd, Settings, state_dir
from .walking import EXTENSIONS, display_path, inside, skipped_key, walk

log = logging.getLogger("facegrid.queuer")
HEADROOM = 4096  # bytes kept free under max-job-size for the envelope header
# Below this max-job-size most camera photos (2-8 MB) would leave re-encoded smaller; beanstalkd's
# own default without -z is 65,535 bytes. The queuer refuses it unless --allow-small-jobs.
SMALL_JOBS = 1 << 20
OLD_DEFAULT_STATE = "facegrid-queuer.sqlite"  # the default before it moved to the user's state folder
WALKED = frozenset(EXTENSIONS | video.VIDEO_EXTENSIONS)  # what the queuer takes from the folders it walks


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


def check_job_size(limit: int, address: str, allow_small: bool) -> None:
    """One line at start when beanstalkd takes only small jobs (started without -z)."""
    if limit >= SMALL_JOBS:
        return
    fix = f"restart beanstalkd with -z 16777216 (it takes jobs of at most {limit} bytes, as without -z)"
    if not allow_small:
        raise ConfigError(
            f"beanstalkd at {address}: {fix}; most photos would be re-encoded smaller to fit. "
            "Or pass --allow-small-jobs to queue them re-encoded"
        )
    log.warning("beanstalkd at %s: photos over %d bytes are re-encoded smaller to fit; %s", address, limit, fix)


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


class Progress:
    """tqdm on a terminal; plain lines every 10 s elsewhere."""

    def __init__(self, total: int):
        self.total, self.done, self.start, self.last = total, 0, time.monotonic(), 0.0
        self.bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="file", desc="queued", file=sys.stderr, smoothing=0.1)

    def update(self, n: int = 1, **counts: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
            self.bar.set_postfix(counts, refresh=False)
            return
        now = time.monotonic()
        if now - self.last >= 10 or self.done == self.total:
            self.last = now
            rate = self.done / max(now - self.start, 1e-9)
            eta = (self.total - self.done) / rate if rate else 0
            log.info(
                "%d/%d files handled (%.0f/s, ETA %ds) %s",
                self.done,
                self.total,
                rate,
                eta,
                " ".join(f"{k}={v}" for k, v in counts.items()),
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def make_body(
    path: str,
    data: bytes,
    st: os.stat_result,
    job_id: str,
    limit: int,
    settings: Settings,
    keys: envelope.Keyring | None = None,
    frame: dict | None = None,
) -> tuple[bytes, bool]:
    """The job body of a photo (or of a video's frame), re-encoded smaller when it would not fit max-job-size."""
    job = ImageJob(
        id=job_id,
        path=display_path(path),
        host=HOST,
        size=len(data),
        mtime=st.st_mtime,
        queued_at=time.time(),
        image=data,
        frame=frame,
    )
    body = envelope.encode_image_job(job, keys)
    if len(body) <= limit:
        return body, False
    try:
        job.image, job.reencoded = imaging.reencode_to_fit(
            data, limit - HEADROOM, settings.queuer.reencode_quality, settings.filter.max_pixels
        )
        log.log(
            logging.DEBUG if limit < SMALL_JOBS else logging.WARNING,  # small jobs: said once at start
            "%s: %d bytes is over max-job-size %d; queued re-encoded as %dx%d JPEG (%d bytes)",
            job.path,
            len(data),
            limit,
            job.reencoded["width"],
            job.reencoded["height"],
            len(job.image),
        )
    except ImageUnreadable as exc:
        job.image = b""
        job.error = (
            f"file is {len(data)} bytes, over beanstalkd max-job-size {limit}, and could not be "
            f"re-encoded smaller: {exc}; start beanstalkd with a larger -z"
        )
        log.error("%s: %s", job.path, job.error)
    return envelope.encode_image_job(job, keys), True


def run_queuer(
    settings: Settings,
    roots: list[str],
    requeue: bool,
    state_file: str,
    should_stop: Callable[[], bool] = lambda: False,
    allow_small_jobs: bool = False,
) -> dict[str, int]:
    for r in roots:
        if not os.path.isdir(r):
            raise UsageError(f"{r}: not a folder; pass folders of photos, as in queuer.py /srv/photos")
    keys = envelope.load_keys(settings.grid.key_file)  # a bad key file stops us before anything is made
    if keys is None:
        log.warning("%s", envelope.UNSIGNED_WARNING)
    state = State(state_file)  # a read-only folder or a busy state file: one line before connecting
    log.info("record of queued files: %s", display_path(state_file))
    b = settings.beanstalkd
    queue = Queue(b, use=b.images_tube, should_stop=should_stop).connect()
    limit = queue.max_job_size()
    try:
        check_job_size(limit, queue.address, allow_small_jobs)
    except ConfigError:
        queue.close()
        raise
    counts = {
        "queued": 0,
        "unchanged": 0,
        "duplicate": 0,
        "reencoded": 0,
        "unreadable": 0,
        "not_image": 0,
        "videos": 0,
        "frames": 0,
    }

    def report(path: str, why: str, count: str = "unreadable") -> None:
        counts[count] += 1
        log.warning("%s: %s", display_path(path), why)

    real_roots = [os.path.realpath(r) for r in roots]

    skipped: collections.Counter[str] = collections.Counter()

    def not_a_photo(path: str) -> None:
        skipped[skipped_key(path)] += 1
        log.debug("%s: not a photo by its extension; skipped", display_path(path))

    log.info("walking %s", ", ".join(roots))
    files = list(walk(roots, report, not_a_photo, WALKED))
    counts["skipped"] = sum(skipped.values())
    for key, n in sorted(skipped.items()):  # the summary names each extension left aside
        counts[f"skipped{key}"] = n
    if skipped:
        log.info(
            "left aside %d file(s) that are not photos by their extension: %s",
            counts["skipped"],
            ", ".join(f"{e} {n}" for e, n in sorted(skipped.items())),
        )
    log.info(
        "found %d photo and video files; queuing on %s (%s), max-job-size %d bytes",
        len(files),
        b.images_tube,
        queue.address,
        limit,
    )
    backlog = Backlog(queue, b.images_tube, b.max_ready, should_stop, waiting_for="the filters")
    progress = Progress(len(files))
    try:
        for path in files:
            if should_stop():
                log.warning("stopping early: %d files not handled; run again to go on", len(files) - progress.done)
                break
            _queue_one(path, requeue, settings, queue, state, backlog, limit, counts, report, keys, real_roots)
            progress.update(**counts)
    finally:
        state.commit()
        progress.close()
        queue.close()
    return counts


def _queue_one(
    path, requeue, settings, queue, state, backlog, limit, counts, report, keys=None, real_roots=None
) -> None:
    try:
        if real_roots is not None and not inside(path, real_roots):  # a link changed since the walk
            return report(path, "now points outside the queued folders; skipped")
        st = os.stat(path)
        if not requeue and state.unchanged(path, st):
            counts["unchanged"] += 1
            return
        if video.is_video(path):
            return _queue_video(path, st, requeue, settings, queue, state, backlog, limit, counts, report, keys)
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        return report(path, f"cannot read ({exc.strerror or exc}); skipped")
    kind = imaging.sniff(data)
    if kind is None:  # only photos leave this host: not a link to /etc/passwd named .jpg
        what = "file is empty (0 bytes)" if not data else f"not an image (it starts with {data[:8]!r})"
        return report(path, f"{what}; skipped", "not_image")
    sha = hashlib.sha256(data).hexdigest()
    if not requeue and state.has_id(sha):
        counts["duplicate"] += 1
        state.record(path, st, sha)
        return
    body, shrunk = make_body(path, data, st, sha, limit, settings, keys)
    if not _is_utf8(path):
        log.warning("%s: file name is not UTF-8; stored with its odd bytes shown as \\xNN", display_path(path))
    counts["reencoded"] += shrunk
    backlog.wait()
    queue.put(body, priority=1024)
    state.record(path, st, sha)
    counts["queued"] += 1


def _queue_video(path, st, requeue, settings, queue, state, backlog, limit, counts, report, keys) -> None:
    """One image job per kept frame, put as decoded; an unreadable video is one error job."""
    v = settings.video
    shown = display_path(path)
    try:
        sha = video.file_sha256(path)
    except OSError as exc:
        return report(path, f"cannot read ({exc.strerror or exc}); skipped")
    if not requeue and state.has_id(sha):
        counts["duplicate"] += 1
        state.record(path, st, sha)
        return
    after = -1.0 if requeue else state.video_resume(sha)
    if after >= 0:
        log.info("%s: resuming after %.1f s, where an earlier run stopped", shown, after)
    info, sent, last_t = None, 0, after
    try:
        for item in video.sample(path, v.fps, v.min_change, v.jpeg_quality, v.max_side, after):
            if isinstance(item, video.Info):
                info = item
                continue
            frame = {
                "video_id": sha,
                "t": item.t,
                "t_end": item.t_end,
                "index": item.index,
                "fps": v.fps,
                "duration": info.duration if info else None,
            }
            body, shrunk = make_body(path, item.jpeg, st, envelope.frame_id(sha, item.t), limit, settings, keys, frame)
            if backlog.should_stop():  # SIGTERM mid-video: the next run resumes after the last frame put
                state.commit()
                log.warning("%s: stopping at %s; run again to resume there", shown, video.clock(last_t))
                return
            counts["reencoded"] += shrunk
            backlog.wait()
            queue.put(body, priority=1024)
            state.video_put(sha, item.t_end)
            sent, last_t = sent + 1, item.t_end
            counts["frames"] += 1
    except video.VideoUnreadable as exc:
        if sent == 0 and after < 0:  # nothing of it decodes: one error row, as for a bad photo
            job = ImageJob(
                id=sha, path=shown, host=HOST, size=st.st_size, mtime=st.st_mtime, queued_at=time.time(), error=str(exc)
            )
            backlog.wait()
            queue.put(envelope.encode_image_job(job, keys), priority=1024)
            state.record(path, st, sha)
            return report(path, f"{exc}; an error row is stored for it")
        log.warning("%s: %s; kept the %d frame(s) before it", shown, exc, sent)
    duration = info.duration if info else None
    if duration and last_t >= 0 and last_t + max(2.0, 2 / v.fps) < duration:
        log.warning(
            "%s: decoding stopped at %s of %s (damaged or truncated); the frames before it are kept",
            shown,
            video.clock(last_t),
            video.clock(duration),
        )
    state.video_done(sha)
    state.record(path, st, sha)
    counts["videos"] += 1
    counts["queued"] += 1
    log.info("%s: %d frame(s) queued (%s)", shown, sent, video.clock(duration or last_t))


def _is_utf8(path: str) -> bool:
    try:
        os.fsencode(path).decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False
