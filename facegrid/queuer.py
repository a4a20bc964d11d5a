"""The queuer: folders -> one job per photo (and per sampled video frame) on the images tube.

It never writes, moves or renames the user's files. Its own state (which
files it queued) lives in a small SQLite file, so a second run over the same
folders queues only what is new or changed, unless --requeue is given.
"""

from __future__ import annotations

import collections
import hashlib
import logging
import os
import sys
import time
from collections.abc import Callable

from . import envelope, imaging, video
from .backlog import Backlog
from .beanstalk import Queue
from .envelope import ImageJob
from .errors import ConfigError, ImageUnreadable, UsageError
from .log import HOST
from .queuer_record import OLD_DEFAULT_STATE, State, default_state, state_path  # noqa: F401 (the queuer's record)
from .settings import Settings
from .walking import EXTENSIONS, display_path, inside, skipped_key, walk

log = logging.getLogger("facegrid.queuer")
HEADROOM = 4096  # bytes kept free under max-job-size for the envelope header
# Below this max-job-size most camera photos (2-8 MB) would leave re-encoded smaller; beanstalkd's
# own default without -z is 65,535 bytes. The queuer refuses it unless --allow-small-jobs.
SMALL_JOBS = 1 << 20
WALKED = frozenset(EXTENSIONS | video.VIDEO_EXTENSIONS)  # what the queuer takes from the folders it walks


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


COUNTS = ("queued", "unchanged", "duplicate", "reencoded", "unreadable", "not_image", "videos", "frames")


class Queuer:
    """Puts one job per photo, and per kept frame of a video, on the images tube.

    It holds what queuing a file needs (the settings, the queue and its backlog, the record of
    queued files, the queue's job size limit, the signing keys) and counts what happened to each
    file (COUNTS). requeue: queue files the record says are unchanged or already queued;
    real_roots: the queued folders, resolved, when a file must still lie inside them."""

    def __init__(
        self, settings: Settings, queue: Queue, state: State, backlog: Backlog, limit: int, keys, requeue: bool
    ):
        self.settings, self.queue, self.state, self.backlog = settings, queue, state, backlog
        self.limit, self.keys, self.requeue = limit, keys, requeue
        self.real_roots: list[str] | None = None
        self.counts: dict[str, int] = dict.fromkeys(COUNTS, 0)

    def report(self, path: str, why: str, count: str = "unreadable") -> None:
        """A file left out (or kept as an error row), counted and logged with the reason."""
        self.counts[count] += 1
        log.warning("%s: %s", display_path(path), why)

    def queue_file(self, path: str) -> None:
        """Queue one photo or video, unless the record says it is unchanged or already queued."""
        counts, state = self.counts, self.state
        try:
            if self.real_roots is not None and not inside(path, self.real_roots):  # a link changed since the walk
                return self.report(path, "now points outside the queued folders; skipped")
            st = os.stat(path)
            if not self.requeue and state.unchanged(path, st):
                counts["unchanged"] += 1
                return
            if video.is_video(path):
                return self._queue_video(path, st)
            with open(path, "rb") as f:
                data = f.read()
        except OSError as exc:
            return self.report(path, f"cannot read ({exc.strerror or exc}); skipped")
        kind = imaging.sniff(data)
        if kind is None:  # only photos leave this host: not a link to /etc/passwd named .jpg
            what = "file is empty (0 bytes)" if not data else f"not an image (it starts with {data[:8]!r})"
            return self.report(path, f"{what}; skipped", "not_image")
        sha = hashlib.sha256(data).hexdigest()
        if not self.requeue and state.has_id(sha):
            counts["duplicate"] += 1
            state.record(path, st, sha)
            return
        body, shrunk = make_body(path, data, st, sha, self.limit, self.settings, self.keys)
        if not _is_utf8(path):
            log.warning("%s: file name is not UTF-8; stored with its odd bytes shown as \\xNN", display_path(path))
        counts["reencoded"] += shrunk
        self._put(body)
        state.record(path, st, sha)
        counts["queued"] += 1

    def _put(self, body: bytes) -> None:
        self.backlog.wait()
        self.queue.put(body, priority=1024)

    def _queue_video(self, path: str, st: os.stat_result) -> None:
        """One image job per kept frame, put as decoded; an unreadable video is one error job."""
        shown = display_path(path)
        try:
            sha = video.file_sha256(path)
        except OSError as exc:
            return self.report(path, f"cannot read ({exc.strerror or exc}); skipped")
        if not self.requeue and self.state.has_id(sha):
            self.counts["duplicate"] += 1
            self.state.record(path, st, sha)
            return
        after = -1.0 if self.requeue else self.state.video_resume(sha)
        if after >= 0:
            log.info("%s: resuming after %.1f s, where an earlier run stopped", shown, after)
        try:
            done = self._put_frames(path, st, sha, after)
        except _Unreadable as exc:
            if exc.sent == 0 and after < 0:  # nothing of it decodes: one error row, as for a bad photo
                job = ImageJob(
                    id=sha,
                    path=shown,
                    host=HOST,
                    size=st.st_size,
                    mtime=st.st_mtime,
                    queued_at=time.time(),
                    error=str(exc),
                )
                self._put(envelope.encode_image_job(job, self.keys))
                self.state.record(path, st, sha)
                return self.report(path, f"{exc}; an error row is stored for it")
            log.warning("%s: %s; kept the %d frame(s) before it", shown, exc, exc.sent)
            done = (exc.sent, exc.last_t, exc.duration)
        if done is not None:
            self._video_done(path, st, sha, *done)

    def _put_frames(
        self, path: str, st: os.stat_result, sha: str, after: float
    ) -> tuple[int, float, float | None] | None:
        """Put the video's kept frames after second `after`: (frames sent, the last one's end, the
        video's duration), or None when a stop request ended it (the next run resumes there)."""
        v = self.settings.video
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
                frame_id = envelope.frame_id(sha, item.t)
                body, shrunk = make_body(path, item.jpeg, st, frame_id, self.limit, self.settings, self.keys, frame)
                if self.backlog.should_stop():  # SIGTERM mid-video: the next run resumes after the last frame put
                    self.state.commit()
                    log.warning(
                        "%s: stopping at %s; run again to resume there", display_path(path), video.clock(last_t)
                    )
                    return None
                self.counts["reencoded"] += shrunk
                self._put(body)
                self.state.video_put(sha, item.t_end)
                sent, last_t = sent + 1, item.t_end
                self.counts["frames"] += 1
        except video.VideoUnreadable as exc:
            raise _Unreadable(str(exc), sent, last_t, info.duration if info else None) from exc
        return sent, last_t, info.duration if info else None

    def _video_done(self, path: str, st: os.stat_result, sha: str, sent: int, last_t: float, duration) -> None:
        shown = display_path(path)
        if duration and last_t >= 0 and last_t + max(2.0, 2 / self.settings.video.fps) < duration:
            log.warning(
                "%s: decoding stopped at %s of %s (damaged or truncated); the frames before it are kept",
                shown,
                video.clock(last_t),
                video.clock(duration),
            )
        self.state.video_done(sha)
        self.state.record(path, st, sha)
        self.counts["videos"] += 1
        self.counts["queued"] += 1
        log.info("%s: %d frame(s) queued (%s)", shown, sent, video.clock(duration or last_t))


class _Unreadable(Exception):
    """A video that stopped decoding, after `sent` frames (the last ending at last_t)."""

    def __init__(self, why: str, sent: int, last_t: float, duration: float | None):
        super().__init__(why)
        self.sent, self.last_t, self.duration = sent, last_t, duration


def connect(settings: Settings, state: State, keys, requeue: bool, should_stop, allow_small_jobs: bool) -> Queuer:
    """A Queuer on the images tube, once the server's job size limit is checked."""
    b = settings.beanstalkd
    queue = Queue(b, use=b.images_tube, should_stop=should_stop).connect()
    limit = queue.max_job_size()
    try:
        check_job_size(limit, queue.address, allow_small_jobs)
    except ConfigError:
        queue.close()
        raise
    backlog = Backlog(queue, b.images_tube, b.max_ready, should_stop, waiting_for="the filters")
    return Queuer(settings, queue, state, backlog, limit, keys, requeue)


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
    queuer = connect(settings, state, keys, requeue, should_stop, allow_small_jobs)
    queuer.real_roots = [os.path.realpath(r) for r in roots]
    files = _walk(roots, queuer)
    log.info(
        "found %d photo and video files; queuing on %s (%s), max-job-size %d bytes",
        len(files),
        settings.beanstalkd.images_tube,
        queuer.queue.address,
        queuer.limit,
    )
    progress = Progress(len(files))
    try:
        for path in files:
            if should_stop():
                log.warning("stopping early: %d files not handled; run again to go on", len(files) - progress.done)
                break
            queuer.queue_file(path)
            progress.update(**queuer.counts)
    finally:
        state.commit()
        progress.close()
        queuer.queue.close()
    return queuer.counts


def _walk(roots: list[str], queuer: Queuer) -> list[str]:
    """The photo and video files under roots; the others are counted by extension (skipped.EXT)."""
    counts = queuer.counts
    skipped: collections.Counter[str] = collections.Counter()

    def not_a_photo(path: str) -> None:
        skipped[skipped_key(path)] += 1
        log.debug("%s: not a photo by its extension; skipped", display_path(path))

    log.info("walking %s", ", ".join(roots))
    files = list(walk(roots, queuer.report, not_a_photo, WALKED))
    counts["skipped"] = sum(skipped.values())
    for key, n in sorted(skipped.items()):  # the summary names each extension left aside
        counts[f"skipped{key}"] = n
    if skipped:
        log.info(
            "left aside %d file(s) that are not photos by their extension: %s",
            counts["skipped"],
            ", ".join(f"{e} {n}" for e, n in sorted(skipped.items())),
        )
    return files


def _is_utf8(path: str) -> bool:
    try:
        os.fsencode(path).decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False
