"""What every worker loop shares: stop requests, attempts, the outcome table.

Outcome table (docs/protocol.md, "Delivery"):
  success            -> delete, only after the effect is durable
  retryable failure  -> release with a capped exponential delay
  bad body           -> bury, with the reason logged
  too many attempts  -> an error result is stored, then the job is buried
"""

from __future__ import annotations

import logging
import signal
import time

import greenstalk

from .beanstalk import JobLost, Queue
from .settings import Beanstalkd

log = logging.getLogger("facegrid.delivery")


class Stopper:
    """Signal handlers only set a flag; the loop reads it between jobs.

    The first SIGTERM/SIGINT asks for a graceful stop and puts the signal back to
    its default action, so a second one ends the process at once, even inside a
    long C call. beanstalkd then hands the job that was reserved to another worker.
    """

    def __init__(self, signals=(signal.SIGTERM, signal.SIGINT)):
        self.stopping = False
        self.signals = signals

    def install(self) -> Stopper:
        for sig in self.signals:
            signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.stopping = True
        for sig in self.signals:
            signal.signal(sig, signal.SIG_DFL)
        log.info(
            "got %s: finishing the current job, then exiting (send it again to exit now)", signal.Signals(signum).name
        )

    def __call__(self) -> bool:
        return self.stopping


def job_stats(queue: Queue, job: greenstalk.Job) -> dict:
    """stats-job for a reserved job; {} if the server no longer knows it."""
    try:
        return queue.stats_job(job)
    except JobLost:
        return {}


def attempts(stats: dict) -> int:
    """How many times beanstalkd has handed this job out, this time included."""
    return int(stats.get("reserves", 1))


def retry_delay(conf: Beanstalkd, stats: dict) -> int:
    """Exponential in the number of earlier releases and timeouts, capped."""
    n = int(stats.get("releases", 0)) + int(stats.get("timeouts", 0))
    return int(min(conf.retry_delay * (2**n), conf.retry_delay_max))


def bury(queue: Queue, job: greenstalk.Job, stats: dict, reason: str) -> None:
    log.error("burying job %s: %s", job.id, reason)
    try:
        queue.bury(job, priority=int(stats.get("pri", 2**16)))
    except JobLost as exc:
        log.warning("%s", exc)


def release(queue: Queue, conf: Beanstalkd, job: greenstalk.Job, stats: dict, reason: str) -> None:
    delay = retry_delay(conf, stats)
    log.warning("releasing job %s with a %ds delay: %s", job.id, delay, reason)
    try:
        queue.release(job, priority=int(stats.get("pri", 2**16)), delay=delay)
    except JobLost as exc:
        log.warning("%s", exc)


def tube_idle(queue: Queue, *tubes: str) -> bool:
    """Nothing ready, delayed or reserved on any of these tubes."""
    for tube in tubes:
        s = queue.stats_tube(tube)
        if s["current-jobs-ready"] or s["current-jobs-delayed"] or s["current-jobs-reserved"]:
            return False
    return True


class KeepAlive:
    """touch the job when a third of its TTR has gone by, between stages."""

    def __init__(self, queue: Queue, job: greenstalk.Job, ttr: int):
        self.queue, self.job, self.every = queue, job, max(1.0, ttr / 3)
        self.last = time.monotonic()

    def __call__(self) -> None:
        if time.monotonic() - self.last >= self.every:
            self.queue.touch(self.job)
            self.last = time.monotonic()
