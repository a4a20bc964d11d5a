"""The collector: people tube -> SQLite, in batches, exactly once.

Reserve up to [collector] batch results, upsert them in one transaction, commit,
and only then delete the jobs. A crash before the commit leaves nothing in the
database and the jobs go back to the tube; a crash after it only means the
batch is delivered again, and the upserts make that harmless.
"""

from __future__ import annotations

import logging
import sqlite3

import greenstalk

from . import envelope, store
from .envelope import Result
from .errors import BadJob
from .log import RateLog
from .queue import JobLost, Queue
from .settings import Settings
from .worker import Stopper, bury, job_stats, tube_idle

log = logging.getLogger("facegrid.collector")


class Collector:
    def __init__(self, settings: Settings, queue: Queue, db):
        self.settings, self.queue, self.db = settings, queue, db
        self.batch: list[tuple[greenstalk.Job, Result]] = []
        self.stored = 0

    def take(self, job: greenstalk.Job) -> None:
        try:
            result = envelope.decode(job.body)
            if not isinstance(result, Result):
                raise BadJob("an image job sits on the people tube")
        except BadJob as exc:
            return bury(self.queue, job, job_stats(self.queue, job), f"bad result job: {exc}")
        self.batch.append((job, result))

    def flush(self) -> int:
        """Commit the batch, then delete its jobs. Returns how many were stored."""
        if not self.batch:
            return 0
        batch, self.batch = self.batch, []
        try:
            store.store_results(self.db, [r for _, r in batch])
            done = batch
        except sqlite3.Error as exc:
            log.warning("batch of %d failed (%s); storing one by one", len(batch), exc)
            done = self._one_by_one(batch)
        for job, _ in done:
            try:
                self.queue.delete(job)
            except JobLost as exc:  # stored already; the redelivery will be a no-op upsert
                log.warning("%s", exc)
        self.stored += len(done)
        return len(done)

    def _one_by_one(self, batch):
        done = []
        for job, result in batch:
            try:
                store.store_results(self.db, [result])
                done.append((job, result))
            except sqlite3.Error as exc:
                bury(self.queue, job, job_stats(self.queue, job), f"{result.path}: cannot store: {exc}")
        return done


def run_collector(settings: Settings, db_path: str, burst: bool, stopper: Stopper | None = None) -> int:
    stopper = stopper or Stopper().install()
    b, c = settings.beanstalkd, settings.collector
    queue = Queue(b, watch=(b.people_tube,), should_stop=stopper).connect()
    db = store.open_db(db_path)
    col = Collector(settings, queue, db)
    rate = RateLog(log, "results stored", c.log_every)
    log.info("collector ready: %s -> %s on %s", b.people_tube, db_path, queue.address)
    while not stopper.stopping:
        job = queue.reserve(timeout=0 if col.batch else 1)
        if job is not None:
            col.take(job)
            if len(col.batch) < c.batch:
                continue
        n = col.flush()
        if n:
            rate.add(n)
        elif job is None and burst and tube_idle(queue, b.images_tube, b.people_tube):
            break
    col.flush()
    rate.emit(f"into {db_path} (exiting)")
    queue.close()
    return 0
