"""Watchlists and alerts: every face the collector stores, checked against the watched people.

A watch is what a search for the person would use right now (searching.settle):
the profile vectors (the mean of the target photos and the first pass's surest
matches, or each of them in mode min) and the tolerance the look-alike rule gave
that profile in this collection. A stored face is a hit when it lies within that
tolerance, as it would be a match of that search (which, between 0.9 times that
tolerance and scoring.widest, also weighs the face's own look-alikes:
searching.face_tolerances; a watch does not); its confidence is the search's word
(scoring.confidence). `facegrid watch refresh` makes the profile and tolerance again from
the same targets once the collection has grown.

The check is one matrix product of the batch's faces against every watched
profile (Watchlist.hits), so 1,000 watches cost a small part of a millisecond
per stored face (benchmarks/live.py measures it).

Each hit is recorded (store.record_alerts, keyed by watch and photo, or video)
after the batch's commit, then sent: a JSON line to [alerts] file, a log line, a
job on [alerts] tube and [alerts] command. A photo stored again finds its alert
recorded and sends nothing; an alert recorded but not sent when the collector
stopped is sent when it starts again.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TextIO

import numpy as np

from . import scoring, store
from .beanstalk import Queue
from .envelope import Result
from .errors import QueueUnavailable
from .settings import Alerts, Beanstalkd, Settings
from .textsafe import printable

log = logging.getLogger("facegrid.alerts")
DIM = 128
WORDS = ("weak", "likely", "strong")  # confidence words, least sure first
SMALL_BATCH = 8  # faces: below this the products go row by row (Watchlist._products)
SLACK = 1e-4  # the product form of the distance errs by ~1e-6: candidates are measured again exactly


def vectors(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype="<f4").reshape(-1, DIM).astype(np.float32)


def make_watch(
    db_path: str, name: str, encodings: np.ndarray, target_ids: list[str], settings: Settings, source: str, person=None
) -> dict:
    """A watch row for store.save_watch: the profile and tolerance a search from these encodings
    would use in this database now (an empty database: the targets and the plain tolerance)."""
    from . import index as index_mod
    from . import searching
    from .databases import Collection

    s = settings.search
    params = s.params()
    encodings = np.atleast_2d(np.asarray(encodings, dtype=np.float32))
    coll = Collection([db_path])
    try:
        segments = [seg for path, db in coll for seg in index_mod.load(db, path).segments]
        idx = index_mod.FaceIndex(segments, 0)
        wider, tol = encodings, params.tolerance
        if len(idx):
            params = searching.for_collection(idx, coll, params)  # as find() does
            _, tol, wider = searching.settle(idx, encodings, params, s.mode)
    finally:
        for db in coll.dbs:
            db.conn.close()
    now = time.time()
    return {
        "name": name,
        "source": source,
        "person_id": person,
        "mode": s.mode,
        "tolerance": float(tol),
        "profile": index_mod.profile(wider, s.mode).astype("<f4").tobytes(),  # the vectors a search measures to
        "targets": encodings.astype("<f4").tobytes(),
        "target_ids": json.dumps(sorted(set(target_ids))),
        "created_at": now,
        "refreshed_at": now,
    }


class Watchlist:
    """Every watch's profile rows in one matrix, with each watch's first row and tolerance."""

    def __init__(self, rows: list[dict]):
        self.rows = rows
        profiles = [vectors(r["profile"]) for r in rows]
        self.matrix = np.concatenate(profiles) if rows else np.zeros((0, DIM), np.float32)
        self.sqnorms = np.einsum("ij,ij->i", self.matrix, self.matrix)
        sizes = [len(p) for p in profiles]
        self.starts = np.cumsum([0, *sizes[:-1]]).astype(np.intp)
        self.owner = np.repeat(np.arange(len(rows)), sizes)
        self.tolerance = np.array([r["tolerance"] for r in rows], dtype=np.float32)
        self.skip = [set(json.loads(r["target_ids"] or "[]")) for r in rows]

    def __len__(self) -> int:
        return len(self.rows)

    def hits(self, x: np.ndarray) -> list[tuple[int, int, float]]:
        """(face row, watch position, distance) of every face in x within a watch's tolerance."""
        if not len(self.rows) or not len(x):
            return []
        x = np.asarray(x, dtype=np.float32)
        d2 = np.einsum("ij,ij->i", x, x)[:, None] + self.sqnorms[None, :] - 2.0 * self._products(x)
        nearest = np.minimum.reduceat(d2, self.starts, axis=1)  # per watch: its nearest profile row
        limit = (self.tolerance + SLACK) ** 2
        out = []
        for i, w in zip(*np.nonzero(nearest <= limit[None, :]), strict=True):
            rows = self.matrix[self.owner == w]
            d = float(np.sqrt(((rows - x[i]) ** 2).sum(axis=1)).min())
            if d <= self.tolerance[w]:
                out.append((int(i), int(w), d))
        return out

    def _products(self, x: np.ndarray) -> np.ndarray:
        """x . every profile row. A few faces (an idle grid's batches) go row by row in NumPy's own
        loops: a threaded BLAS call costs more in waking its threads than the product on a busy host."""
        if len(x) >= SMALL_BATCH:
            return x @ self.matrix.T
        return np.stack([np.einsum("kj,j->k", self.matrix, row) for row in x])


class Alerter:
    """Checks stored batches (the writer thread) and sends their new alerts (the main thread)."""

    def __init__(self, conf: Alerts, db, beanstalkd: Beanstalkd | None = None, should_stop=lambda: False):
        self.conf, self.db = conf, db
        self.beanstalkd, self.should_stop = beanstalkd, should_stop
        self.queue: Queue | None = None  # its own connection to [alerts] tube, made at the first alert
        self.least = WORDS.index(conf.confidence)
        self.version: str | None = None
        self.watchlist = Watchlist([])
        self.file: TextIO | None = None  # opened at the first alert
        where = Path(conf.file) if conf.file else None
        if where is not None and not os.access(where if where.exists() else where.parent.resolve(), os.W_OK):
            log.warning(
                "[alerts] file = %s: this collector may not write it, so alerts go to the log and the tube "
                "only; set [alerts] file to a file in a folder it may write (or empty)",
                conf.file,
            )
        self.argv = shlex.split(conf.command) if conf.command else []
        self.runner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="alert-command") if self.argv else None

    # -- the writer thread: after the batch's commit --------------------------------------------
    def check(self, results: list[Result]) -> list[tuple[int, str, str]]:
        """Record the alerts of a stored batch; returns the new ones (watch_id, subject, body)."""
        version = store.watch_version(self.db)
        if version != self.version:
            self.watchlist, self.version = Watchlist(store.watches(self.db)), version
            log.info("watching %d person(s)", len(self.watchlist))
        if not len(self.watchlist):
            return []
        faces = [(r, i) for r in results if r.status == "ok" for i in range(len(r.faces))]
        if not faces:
            return []
        x = np.stack([r.faces[i].encoding for r, i in faces])
        best: dict[tuple[int, str], tuple] = {}  # one alert per watch and photo (or video): its nearest face
        for row, w, d in self.watchlist.hits(x):
            r, i = faces[row]
            if r.id in self.watchlist.skip[w]:  # a target photo of the watch itself
                continue
            key = (self.watchlist.rows[w]["id"], _subject(r))
            if key not in best or d < best[key][2]:
                best[key] = (r, i, d, w)
        rows = []
        now = time.time()
        for (watch_id, subject), (r, i, d, w) in best.items():
            body = self._body(self.watchlist.rows[w], r, i, d, float(self.watchlist.tolerance[w]), now)
            if body is not None:
                rows.append((watch_id, subject, r.id, i, body, now))
        return store.record_alerts(self.db, rows) if rows else []

    def _body(self, watch: dict, r: Result, i: int, d: float, tol: float, now: float) -> str | None:
        from . import imaging  # here: OpenCV only once a face is a hit

        face = r.faces[i]
        top, right, bottom, left = face.box
        word, precision = scoring.confidence(d / tol, max(0, right - left), imaging.sharpness(face.crop))
        if WORDS.index(word) < self.least:
            return None
        alert = {
            "person": watch["person_id"],
            "name": watch["name"],
            "watch": watch["id"],
            "photo": r.id,
            "face": i,
            "path": r.path,
            "host": r.host,
            "box": {"top": top, "right": right, "bottom": bottom, "left": left},
            "distance": round(d, 4),
            "score": round(d / tol, 4),
            "confidence": word,
            "precision": precision,
            "stored_at": round(now, 3),
        }
        if r.frame:
            alert["video"] = {"id": r.frame["video_id"], "t": r.frame["t"]}
        return json.dumps(alert, sort_keys=False)

    # -- the main thread: the one that owns the beanstalkd connection ----------------------------
    def send(self, alerts: list[tuple[int, str, str]]) -> list[tuple[int, str]]:
        """Write, log, put and run each alert; returns their keys, to be marked sent."""
        if not alerts:
            return []
        for _, _, body in alerts:
            a = json.loads(body)
            log.warning(
                "alert: %s in %s on %s (%s, distance %.3f)",
                printable(a["name"]),
                printable(a["path"]),
                printable(a["host"]),
                a["confidence"],
                a["distance"],
            )
            if self.conf.file:
                self._append(body)
            if self.beanstalkd is not None and self.conf.tube:
                self._put(body)
            if self.runner is not None:
                self.runner.submit(self._run, body)
        if self.file is not None:
            try:
                self.file.flush()
                os.fsync(self.file.fileno())
            except OSError as exc:
                log.error("[alerts] file %s: cannot write (%s); the alerts are on the tube", self.conf.file, exc)
        return [(w, s) for w, s, _ in alerts]

    def _put(self, body: str) -> None:
        assert self.beanstalkd is not None  # send() puts only with a beanstalkd
        if self.queue is None:
            try:
                self.queue = Queue(self.beanstalkd, use=self.conf.tube, should_stop=self.should_stop).connect()
            except QueueUnavailable as exc:
                log.error("[alerts] tube %s: %s; this alert is in the file and the log only", self.conf.tube, exc)
                return
        self.queue.put(body.encode(), priority=1024)  # reconnects as needed, as every role's puts

    def _append(self, body: str) -> None:
        try:
            if self.file is None:
                self.file = open(self.conf.file, "a", encoding="utf-8")  # noqa: SIM115 (open while running)
            self.file.write(body + "\n")
        except OSError as exc:
            log.error("[alerts] file %s: cannot write (%s); the alert is on the tube", self.conf.file, exc)

    def _run(self, body: str) -> None:
        """[alerts] command with the alert on stdin: no shell, a time limit, failures logged only."""
        name = Path(self.argv[0]).name
        try:
            proc = subprocess.run(
                self.argv, input=body.encode(), capture_output=True, timeout=self.conf.command_timeout
            )
        except subprocess.TimeoutExpired:
            log.error("[alerts] command %s: still running after %gs; stopped", name, self.conf.command_timeout)
        except OSError as exc:
            log.error("[alerts] command %s: cannot run it (%s); fix [alerts] command", name, exc.strerror or exc)
        else:
            if proc.returncode != 0:
                tail = printable(proc.stderr.decode("utf-8", "replace").strip()[-300:])
                log.error("[alerts] command %s exited %d: %s", name, proc.returncode, tail)

    def close(self) -> None:
        if self.queue is not None:
            self.queue.close()
        if self.runner is not None:
            self.runner.shutdown(wait=True)
        if self.file is not None:
            self.file.close()


def _subject(r: Result) -> str:
    """What one alert is about: the photo, or for a sampled frame its whole video."""
    return f"video:{r.frame['video_id']}" if r.frame else r.id
