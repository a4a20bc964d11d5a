"""One beanstalkd connection per process, with reconnects.

greenstalk does not reconnect by itself, and it is not thread-safe. ``Queue``
wraps one client: calls that are safe to repeat (put, reserve, stats) reconnect
with capped exponential backoff and go on; calls tied to a reserved job (delete,
release, bury, touch, stats-job) raise JobLost once the connection that reserved
the job is gone, because beanstalkd has already given that job back to the tube.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import time
import weakref
from collections.abc import Callable

import greenstalk

from .errors import NotBeanstalkd, QueueUnavailable
from .settings import Beanstalkd

log = logging.getLogger("facegrid.beanstalk")
RESERVE_TIMEOUT = 1  # seconds; short so the worker loop sees stop requests
NETWORK_ERRORS = (OSError, EOFError, greenstalk.UnknownResponseError)


class JobLost(Exception):
    """The connection holding this job dropped; beanstalkd will hand it out again."""


def empty_tube(name: str) -> dict:
    """stats-tube's answer for a tube beanstalkd does not hold (it exists only while used or watched)."""
    return {"name": name, **dict.fromkeys(EMPTY_TUBE_COUNTS, 0)}


EMPTY_TUBE_COUNTS = (
    "current-jobs-urgent",
    "current-jobs-ready",
    "current-jobs-reserved",
    "current-jobs-delayed",
    "current-jobs-buried",
    "current-watching",
    "current-using",
    "current-waiting",
    "total-jobs",
)


def handshake(sock: socket.socket, address: str) -> None:
    """Ask `stats` on a fresh socket and check that the answer is beanstalkd's.

    The one place every role connects (queuer, filter, collector, status, buried), so
    whatever else listens at the address (a web server, a database) gives each of them
    the same one line and exit code 3, never a traceback from deep in greenstalk. A
    connection closed before any answer, or a timeout, stays a network error (retried
    on a reconnect); a wrong answer raises NotBeanstalkd. Reads exactly the answer, so
    the socket is left clean for greenstalk."""
    sock.sendall(b"stats\r\n")
    buf = b""
    while b"\n" not in buf and len(buf) < 256:
        chunk = sock.recv(4096)
        if not chunk:
            if buf:
                break
            raise ConnectionError("the server closed the connection without answering")
        buf += chunk
    line, _, rest = buf.partition(b"\n")
    parts = line.split()
    if not line.endswith(b"\r") or len(parts) != 2 or parts[0] != b"OK" or not parts[1].isdigit():
        raise _not_beanstalkd(address, f"it answered {_shown(line)} to stats")
    size = int(parts[1]) + 2
    while len(rest) < size:
        chunk = sock.recv(size - len(rest))
        if not chunk:
            raise ConnectionError("the connection closed inside beanstalkd's answer to stats")
        rest += chunk
    if len(rest) != size or b"\nversion: " not in rest or b"\nmax-job-size: " not in rest:
        raise _not_beanstalkd(address, "its answer to stats is not beanstalkd's")


def _not_beanstalkd(address: str, why: str) -> NotBeanstalkd:
    return NotBeanstalkd(
        f"{address} is not a beanstalkd server ({why}); pass --beanstalkd HOST:PORT with the address "
        "beanstalkd listens on (beanstalkd -l ADDR -p PORT -z 16777216 -b DIR)"
    )


def _shown(answer: bytes) -> str:
    """The first bytes of a foreign server's answer, printable, for the error line."""
    text = answer.decode("latin-1").strip()[:60]
    return repr("".join(c if c.isprintable() else "?" for c in text))


class Queue:
    def __init__(
        self,
        conf: Beanstalkd,
        use: str | None = None,
        watch: tuple[str, ...] = (),
        should_stop: Callable[[], bool] = lambda: False,
    ):
        self.conf, self.use, self.watch = conf, use, watch
        self.should_stop = should_stop
        self.address = f"{conf.host}:{conf.port}"
        self.generation = 0  # bumped on every (re)connect
        self.client: greenstalk.Client | None = None
        # the connection generation each job we reserved came on (kept here, not on greenstalk's Job)
        self._reserved_on: weakref.WeakKeyDictionary[greenstalk.Job, int] = weakref.WeakKeyDictionary()

    # connection management -------------------------------------------------
    def connect(self) -> Queue:
        """First connection: fail fast with QueueUnavailable (exit code 3); a server that
        does not speak beanstalkd's protocol is NotBeanstalkd (exit code 3 too)."""
        try:
            self._open()
        except NETWORK_ERRORS as exc:
            raise QueueUnavailable(
                f"cannot reach beanstalkd at {self.address} ({exc}); start it "
                "(beanstalkd -l ADDR -p PORT -z 16777216 -b DIR) or pass --beanstalkd HOST:PORT"
            ) from None
        return self

    def _open(self) -> None:
        self.close()
        sock = socket.create_connection((self.conf.host, self.conf.port), timeout=10)
        sock.settimeout(max(self.conf.io_timeout, RESERVE_TIMEOUT + 5))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        try:
            handshake(sock, self.address)
            client = greenstalk.Client(sock, encoding=None)
            if self.use:
                client.use(self.use)
            for tube in self.watch:
                client.watch(tube)
            if self.watch and "default" not in self.watch:
                client.ignore("default")
        except BaseException:
            sock.close()
            raise
        self.client = client
        self.generation += 1

    def close(self) -> None:
        if self.client is not None:
            with contextlib.suppress(OSError):
                self.client.close()
            self.client = None

    def reconnect(self, why: BaseException) -> None:
        """Retry until connected or asked to stop (then raise QueueUnavailable)."""
        self.close()
        delay = 0.5
        while True:
            log.warning(
                "beanstalkd %s: connection lost (%s); reconnecting in %.1fs", self.address, why or "unknown", delay
            )
            time.sleep(delay)
            if self.should_stop():
                raise QueueUnavailable(f"stopping while beanstalkd {self.address} is unreachable")
            try:
                self._open()
                log.warning("beanstalkd %s: reconnected", self.address)
                return
            except NETWORK_ERRORS as exc:
                why, delay = exc, min(delay * 2, 30.0)

    def _retry(self, fn: Callable):
        while True:
            if self.client is None:
                self.reconnect(ConnectionError("not connected"))
            try:
                return fn(self.client)
            except NETWORK_ERRORS as exc:
                self.reconnect(exc)

    # repeatable calls ------------------------------------------------------
    def put(self, body: bytes, priority: int = 2**16, ttr: int | None = None) -> int:
        return self._retry(lambda c: c.put(body, priority=priority, ttr=ttr or self.conf.ttr))

    def reserve(self, timeout: int = RESERVE_TIMEOUT) -> greenstalk.Job | None:
        """A job, or None when nothing was ready within the timeout."""

        def go(c):
            try:
                job = c.reserve(timeout=timeout)
            except (greenstalk.TimedOutError, greenstalk.DeadlineSoonError):
                return None  # DEADLINE_SOON: a job we hold is near its TTR; flush it first
            self._reserved_on[job] = self.generation
            return job

        return self._retry(go)

    def stats(self) -> dict:
        return self._retry(lambda c: c.stats())

    def call(self, fn: Callable):
        """fn(client) for a command of the caller's own that is safe to repeat, with reconnects."""
        return self._retry(fn)

    def stats_tube(self, tube: str) -> dict:
        def go(c):
            try:
                return c.stats_tube(tube)
            except greenstalk.NotFoundError:  # a tube exists only while used or watched
                return empty_tube(tube)

        return self._retry(go)

    def max_job_size(self) -> int:
        return int(self.stats()["max-job-size"])

    # calls tied to one reserved job -----------------------------------------
    def _job_call(self, job: greenstalk.Job, fn: Callable):
        if self.client is None or self._reserved_on.get(job, self.generation) != self.generation:
            raise JobLost(f"job {job.id} was reserved on a connection that dropped")
        try:
            return fn(self.client)
        except greenstalk.NotFoundError:
            raise JobLost(f"job {job.id} is no longer reserved by us (TTR ran out?)") from None
        except NETWORK_ERRORS as exc:
            self.close()
            raise JobLost(f"connection dropped while handling job {job.id}: {exc}") from None

    def delete(self, job: greenstalk.Job) -> None:
        self._job_call(job, lambda c: c.delete(job))

    def release(self, job: greenstalk.Job, priority: int, delay: int) -> None:
        self._job_call(job, lambda c: c.release(job, priority=priority, delay=delay))

    def bury(self, job: greenstalk.Job, priority: int) -> None:
        self._job_call(job, lambda c: c.bury(job, priority=priority))

    def touch(self, job: greenstalk.Job) -> None:
        self._job_call(job, lambda c: c.touch(job))

    def stats_job(self, job: greenstalk.Job) -> dict:
        return self._job_call(job, lambda c: c.stats_job(job))
