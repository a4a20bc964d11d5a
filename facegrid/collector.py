"""The collector: people tube -> SQLite, in batches, exactly once.

Reserve up to [collector] batch results, upsert them in one transaction, commit,
and only then delete the jobs. A crash before the commit leaves nothing in the
database and the jobs go back to the tube; a crash after it only means the
batch is delivered again, and the upserts make that harmless.
"""

from __future__ import annotations

import contextlib
import logging
import queue as queue_mod
import sqlite3
from concurrent.futures import Future, ThreadPoolExecutor

import greenstalk

from . import alerting, envelope, store, stuck
from .beanstalk import JobLost, Queue
from .delivery import Stopper, bury, job_stats, release, tube_idle
from .envelope import Result
from .errors import BadJob, DatabaseUnwritable, StoreError
from .log import RateLog
from .settings import Settings

log = logging.getLogger("facegrid.collector")


class Collector:
    """Batches results; a writer thread commits one batch while the next is reserved.

    Jobs are deleted only by the main thread (the one that owns the beanstalkd
    connection), and only after the writer thread reports their commit.
    """

    def __init__(
        self, settings: Settings, queue: Queue, db, keys: envelope.Keyring | None = None, db_path: str | None = None
    ):
        self.settings, self.queue, self.db, self.db_path = settings, queue, db, db_path
        self.fatal: StoreError | None = None  # the database cannot be written any more: stop
        self.batch: list[tuple[greenstalk.Job, Result]] = []
        self.pending: Future | None = None
        self.writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-writer")
        self.stored = 0
        self.keys = keys
        self.alerts = alerting.Alerter(settings.alerts, db, settings.beanstalkd, queue.should_stop)
        self.recorded: queue_mod.SimpleQueue = queue_mod.SimpleQueue()  # alerts the writer recorded, to send
        for alert in store.unsent_alerts(db):  # recorded before a stop, not sent then
            self.recorded.put(alert)

    def take(self, job: greenstalk.Job) -> None:
        try:
            result = envelope.decode(job.body, self.keys)
            if not isinstance(result, Result):
                raise BadJob("an image job sits on the people tube")
        except BadJob as exc:
            return bury(self.queue, job, job_stats(self.queue, job), f"bad result job: {exc}")
        except Exception as exc:  # the door must hold whatever the bytes: bury, never crash
            log.error("job %s: decode failed unexpectedly: %s: %s", job.id, type(exc).__name__, exc)
            return bury(
                self.queue, job, job_stats(self.queue, job), f"bad result job: {type(exc).__name__}: {exc}"[:300]
            )
        self.batch.append((job, result))

    def _write_checked(self, batch) -> list[tuple[greenstalk.Job, tuple[str, str] | None]]:
        """In the writer thread: store the batch (_write), then check its stored faces against the
        watches; their new alerts are recorded in the database and handed to the main thread."""
        outcomes = self._write(batch)
        stored = [r for (_, problem), (_, r) in zip(outcomes, batch, strict=True) if problem is None]
        try:
            for alert in self.alerts.check(stored):
                self.recorded.put(alert)
        except sqlite3.OperationalError as exc:  # stored, not checked: delivered again, checked then
            why = ("release", f"stored, but its alerts cannot be recorded now: {exc}")
            return [(job, why if problem is None else problem) for job, problem in outcomes]
        except Exception:  # the results are stored; a failed alert check must not stop the collector
            log.exception("the alerts of a stored batch of %d could not be checked", len(stored))
        return outcomes

    def send_alerts(self) -> None:
        """Send the alerts recorded so far (main thread: it owns the sockets), then mark them sent."""
        alerts = []
        while not self.recorded.empty():
            alerts.append(self.recorded.get())
        sent = self.alerts.send(alerts)
        if sent:
            self.writer.submit(store.mark_alerts_sent, self.db, sent)

    def flush(self, wait: bool = False) -> int:
        """Hand the batch to the writer; settle the one before it (or both, with wait).

        Returns how many results were stored and deleted from the tube.
        """
        done = self.settle()
        if self.batch:
            batch, self.batch = self.batch, []
            self.pending = self.writer.submit(self._write_checked, batch)
        done = done + self.settle() if wait else done
        self.send_alerts()
        return done

    def settle(self) -> int:
        """Wait for the commit in flight, then delete, release or bury its jobs."""
        if self.pending is None:
            return 0
        outcomes, self.pending = self.pending.result(), None
        stored = 0
        for job, problem in outcomes:
            if problem is None:
                stored += 1
                try:
                    self.queue.delete(job)
                except JobLost as exc:  # stored already; the redelivery will be a no-op upsert
                    log.warning("%s", exc)
            elif problem[0] == "release":
                release(self.queue, self.settings.beanstalkd, job, job_stats(self.queue, job), problem[1])
            elif problem[0] == "stop":  # back to the tube at once, for the collector that comes after us
                self.give_back(job)
            else:
                bury(self.queue, job, job_stats(self.queue, job), problem[1])
        self.stored += stored
        return stored

    def give_back(self, job: greenstalk.Job) -> None:
        with contextlib.suppress(JobLost):  # its connection dropped: beanstalkd has it back already
            self.queue.release(job, priority=int(job_stats(self.queue, job).get("pri", 2**16)), delay=0)

    def close(self) -> None:
        if self.fatal is None:
            self.flush(wait=True)
        else:
            self.settle()  # the batch in flight: stored, or given back
        for job, _ in self.batch:  # reserved, never written: back to the tube
            self.give_back(job)
        self.batch = []
        self.writer.shutdown()
        self.alerts.close()

    def _write(self, batch) -> list[tuple[greenstalk.Job, tuple[str, str] | None]]:
        """In the writer thread: one transaction; on a bad row, one by one. A database that
        cannot be written any more (made read-only, removed, a disk error) stops the collector:
        the batch goes back to the tube."""
        problem = store.write_problem(self.db_path) if self.db_path else None
        if problem:
            return self._stop(batch, DatabaseUnwritable(f"{problem} (it changed while the collector ran)"))
        try:
            store.store_results(self.db, [r for _, r in batch], self.settings.video)
            return [(job, None) for job, _ in batch]
        except sqlite3.DatabaseError as exc:
            kind = store.fatal_write_error(exc)
            if kind is not None:
                return self._stop(batch, kind(f"database {self.db_path or ''} cannot be written any more: {exc}"))
            if isinstance(exc, sqlite3.OperationalError):  # locked, busy, disk full: the database's state
                return [(job, ("release", f"cannot store now: {exc}")) for job, _ in batch]
            log.warning("batch of %d failed (%s: %s); storing one by one", len(batch), type(exc).__name__, exc)
        except Exception as exc:  # a result the database refuses: find it, store the rest
            log.warning("batch of %d failed (%s: %s); storing one by one", len(batch), type(exc).__name__, exc)
        out: list[tuple[greenstalk.Job, tuple[str, str] | None]] = []
        for job, result in batch:
            try:
                store.store_results(self.db, [result], self.settings.video)
                out.append((job, None))
            except sqlite3.OperationalError as exc:
                out.append((job, ("release", f"cannot store now: {exc}")))
            except Exception as exc:  # buried alone; the collector goes on
                out.append((job, ("bury", f"{result.path}: cannot store: {type(exc).__name__}: {exc}"[:500])))
        return out

    def _stop(self, batch, exc: StoreError) -> list[tuple[greenstalk.Job, tuple[str, str] | None]]:
        self.fatal = exc
        return [(job, ("stop", str(exc))) for job, _ in batch]


def run_collector(settings: Settings, db_path: str, burst: bool, stopper: Stopper | None = None) -> int:
    stopper = stopper or Stopper().install()
    b, c = settings.beanstalkd, settings.collector
    keys = envelope.load_keys(settings.grid.key_file)  # a bad key file stops us before anything is made
    if keys is None:
        log.warning("%s", envelope.UNSIGNED_WARNING)
    queue = Queue(b, watch=(b.people_tube,), should_stop=stopper).connect()
    # read-only, another program's, or held by another collector: one line, exit 2, left untouched
    db, lock = store.open_for_writing(db_path)
    col = Collector(settings, queue, db, keys, db_path)
    rate = RateLog(log, "results stored", c.log_every)
    log.info("collector ready: %s -> %s on %s", b.people_tube, db_path, queue.address)
    watcher = stuck.start(b, settings.stuck, (b.images_tube,), stopper)  # copies back what the TTR lost
    try:
        while not stopper.stopping and col.fatal is None:
            if watcher:
                watcher.tick()
            job = queue.reserve(timeout=0 if col.batch else 1)
            if job is not None:
                col.take(job)
                if len(col.batch) < c.batch:
                    continue
            n = col.flush(wait=job is None)  # under load, commit while reserving the next batch
            if n:
                rate.add(n)
            elif job is None and burst and tube_idle(queue, b.images_tube, b.people_tube):
                break
        col.close()
    finally:
        lock.close()
        if watcher:
            watcher.close()
    rate.emit(f"into {db_path} (exiting)")
    queue.close()
    if col.fatal is not None:
        raise col.fatal  # one line; the jobs it held are back on the tube
    return 0
