"""The filter worker: images tube -> faces -> people tube.

One worker is one process with one beanstalkd connection and its own dlib
models. ``filter_pool.py`` runs several and restarts any that crash.
"""

from __future__ import annotations

import logging
import os
import time

import greenstalk

from . import __version__, envelope, imaging
from .backlog import Backlog
from .beanstalk import JobLost, Queue
from .delivery import KeepAlive, Stopper, attempts, bury, job_stats, release, tube_idle
from .envelope import Face, ImageJob, Result
from .errors import BadJob, ImageUnreadable
from .faces import FaceEngine
from .log import HOST, RateLog
from .settings import Settings

log = logging.getLogger("facegrid.filter")


class FilterWorker:
    def __init__(self, settings: Settings, queue: Queue, engine: FaceEngine):
        self.settings, self.queue, self.engine = settings, queue, engine
        self.conf = settings.filter
        self.max_job_size = queue.max_job_size()
        self.keys = envelope.load_keys(settings.grid.key_file)
        self.stats = {"ok": 0, "no_faces": 0, "error": 0, "buried": 0, "faces": 0}

    # one job ---------------------------------------------------------------
    def handle(self, job: greenstalk.Job) -> None:
        stats = job_stats(self.queue, job)
        try:
            image_job = envelope.decode(job.body, self.keys)
            if not isinstance(image_job, ImageJob):
                raise BadJob("a result job sits on the images tube")
        except BadJob as exc:
            self.stats["buried"] += 1
            return bury(self.queue, job, stats, f"bad image job: {exc}")
        except Exception as exc:  # the door must hold whatever the bytes: bury, never crash
            log.error("job %s: decode failed unexpectedly: %s: %s", job.id, type(exc).__name__, exc)
            self.stats["buried"] += 1
            return bury(self.queue, job, stats, f"bad image job: {type(exc).__name__}: {exc}"[:300])
        n = attempts(stats)
        limit = self.settings.beanstalkd.max_attempts
        if n > limit:
            reason = (
                f"gave up after {n - 1} attempts: this photo crashed or hung a filter worker "
                f"each time (beanstalkd.max_attempts = {limit})"
            )
            self._put(envelope.error_result(image_job, reason, attempts=n, filter=self._who()))
            self.stats["buried"] += 1
            return bury(self.queue, job, stats, f"{image_job.path}: {reason}")
        try:
            result = self.process(image_job, KeepAlive(self.queue, job, self.settings.beanstalkd.ttr), n)
            self._put(result)
        except MemoryError:
            return release(self.queue, self.settings.beanstalkd, job, stats, "out of memory")
        except (greenstalk.OutOfMemoryError, greenstalk.DrainingError) as exc:
            return release(self.queue, self.settings.beanstalkd, job, stats, f"beanstalkd refused the result: {exc!r}")
        self.queue.delete(job)
        self.stats[result.status] += 1
        self.stats["faces"] += len(result.faces)

    def process(self, job: ImageJob, keepalive=lambda: None, n_attempt: int = 1) -> Result:
        """Never raises for a bad photo: the reason goes into an error result."""
        started = time.perf_counter()
        base = dict(job.meta(), attempts=n_attempt, filter=self._who(), settings=self._settings())
        if job.error:
            return Result(**base, status="error", error=job.error, processed_at=time.time())
        try:
            a = self.engine.analyse(job.image, keepalive)
            keepalive()
            t0 = time.perf_counter()
            rgb = a.decoded.rgb
            faces = [
                Face(box=box, encoding=enc, crop=imaging.jpeg(imaging.crop(rgb, wbox, self.conf.crop_size), 85))
                for box, wbox, enc in zip(a.original_boxes(), a.boxes, a.encodings, strict=False)
            ]
            annotated = imaging.jpeg(
                imaging.annotate(rgb, a.boxes, self.conf.annotate_max_side), self.conf.annotate_quality
            )
            timings = dict(a.timings, annotate_ms=round((time.perf_counter() - t0) * 1e3, 1))
        except ImageUnreadable as exc:
            log.warning("%s: %s", job.path, exc)
            return Result(**base, status="error", error=str(exc), processed_at=time.time())
        except (MemoryError, JobLost):
            raise
        except Exception as exc:  # the job boundary: dlib/OpenCV on odd input
            log.exception("%s: unexpected failure", job.path)
            return Result(**base, status="error", error=f"{type(exc).__name__}: {exc}"[:300], processed_at=time.time())
        base["settings"]["clahe_applied"] = a.clahe_applied
        base["settings"]["upsample"] = a.upsample  # the one used: filter.upsample_max_side may skip it
        timings["total_ms"] = round((time.perf_counter() - started) * 1e3, 1)
        width, height = a.decoded.width, a.decoded.height
        original = job.reencoded or {}
        if original.get("original_width") and original.get("original_height"):
            # the queuer shrank the photo to fit max-job-size: report the original's pixels
            faces, width, height = _to_original(faces, width, height, original)
        return Result(
            **base,
            status="ok" if faces else "no_faces",
            width=width,
            height=height,
            faces=faces,
            annotated=annotated,
            timings=timings,
            processed_at=time.time(),
        )

    def _put(self, result: Result) -> None:
        body = envelope.encode_result(result, self.keys)
        quality = self.conf.annotate_quality
        while len(body) > self.max_job_size and result.annotated:
            quality -= 20  # a huge annotated copy: shrink it until the result fits
            result.annotated = (
                b"" if quality < 20 else imaging.jpeg(imaging.shrink(_decode_jpeg(result.annotated), 640)[0], quality)
            )
            body = envelope.encode_result(result, self.keys)
        self.queue.put(body)

    def _who(self) -> dict:
        return {"host": HOST, "pid": os.getpid(), "version": __version__}

    def _settings(self) -> dict:
        c = self.conf
        return {
            "model": c.model,
            "upsample": c.upsample,
            "detect_max_side": c.detect_max_side,
            "proposals": c.proposals,  # off, or yuface: HOG only around candidate faces
            "clahe": c.clahe,
            "jitters": c.jitters,
            "annotate_max_side": c.annotate_max_side,
        }


def _to_original(faces: list[Face], width: int, height: int, reencoded: dict) -> tuple[list[Face], int, int]:
    """Boxes and sides of a re-encoded copy, in the pixels of the original photo."""
    ow, oh = reencoded["original_width"], reencoded["original_height"]
    sx, sy = ow / width, oh / height
    for f in faces:
        top, right, bottom, left = f.box
        f.box = (
            min(oh, round(top * sy)),
            min(ow, round(right * sx)),
            min(oh, round(bottom * sy)),
            min(ow, round(left * sx)),
        )
    return faces, ow, oh


def _decode_jpeg(data: bytes):
    return imaging.decode(data, 0, 1 << 62).rgb


def run_worker(settings: Settings, burst: bool, stopper: Stopper | None = None) -> int:
    """The loop of one filter worker process. Returns an exit code."""
    stopper = stopper or Stopper().install()
    b = settings.beanstalkd
    queue = Queue(b, use=b.people_tube, watch=(b.images_tube,), should_stop=stopper).connect()
    engine = FaceEngine(settings.filter)
    worker = FilterWorker(settings, queue, engine)
    rate = RateLog(log, "photos", settings.filter.log_every)
    # results wait in beanstalkd's memory until the collector stores them: do not
    # take new photos while it is far behind
    results = Backlog(queue, b.people_tube, 2 * b.max_ready, stopper, recheck=20, waiting_for="the collector")
    log.info("filter worker ready: %s -> %s on %s; %s", b.images_tube, b.people_tube, queue.address, engine.describe())
    while not stopper.stopping:
        results.wait()
        # burst: ask without waiting first, so the last worker exits as soon as the tube is drained
        job = queue.reserve(timeout=0) if burst else None
        if job is None:
            if burst and tube_idle(queue, b.images_tube):
                break
            job = queue.reserve()
        if job is None:
            continue
        try:
            worker.handle(job)
        except JobLost as exc:
            log.warning("%s; it will be handed out again", exc)
        rate.add(extra=" ".join(f"{k}={v}" for k, v in worker.stats.items()))
    rate.emit(" ".join(f"{k}={v}" for k, v in worker.stats.items()) + " (exiting)")
    queue.close()
    return 0
