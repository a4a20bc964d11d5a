"""Jobs the server forgot to time out: find them, put a copy back; and a probe of the server.

beanstalkd promises that a reserved job whose TTR runs out goes back to its tube.
Debian's 1.12 sometimes never does this when the holder stays connected but
silent, as a frozen host does. The job then stays reserved, with time-left
below zero and timeouts 0, until that connection closes (docs/reliability.md).
The Watcher, run by the collector, finds such jobs on the grid's tubes and puts a
copy of each back. probe() tells whether a server has the defect
(`scripts/status --check`).

How the watcher finds jobs it did not put: beanstalkd numbers jobs 1, 2, 3...
across all tubes, and stats-job answers for any id. When `stats` total-jobs has
grown, the watcher learns the newest id by putting and deleting a marker job on a
private tube. It checks each new job once (a job of another tube is then
forgotten) and again only when the job could be stuck: a ready or buried job one
TTR later, a delayed one when its delay and a TTR have run out, a reserved one
[stuck] grace seconds after its time-left runs out. That costs about (jobs on
the watched tubes) / TTR + (new jobs a second) + 1 commands a second
(docs/reliability.md has the measured figures). At start it looks back
through older ids until it has found as many jobs as the server holds, or
[stuck] lookback ids.

A copy goes on the same tube with the same priority and TTR. The original is
left as it is: no client may delete or release a job another connection holds,
and the watcher kicks nothing. When the holder wakes, it finishes the photo and
deletes the original. If instead its connection closes, the server hands the
original out again. Either way the photo is processed more than once, and the
collector's upserts by sha256 make that harmless.
"""

from __future__ import annotations

import contextlib
import dataclasses
import heapq
import json
import logging
import os
import secrets
import time
from collections.abc import Callable

import greenstalk

from .beanstalk import NETWORK_ERRORS, Queue
from .errors import QueueUnavailable
from .settings import Beanstalkd, Settings
from .settings import Stuck as StuckSettings

log = logging.getLogger("facegrid.stuck")
MARKER_TUBE = "facegrid-stuck-marker"  # private: the watcher's own put-and-delete, to learn the newest id
MAX_CHECKS = 1000  # stats-job commands in one pass at most, so the collector's loop is never held long
MIN_WAIT = 0.5  # seconds before a job is checked again, at the least


@dataclasses.dataclass(frozen=True)
class StuckJob:
    """A job still reserved past its TTR and grace, as stats-job showed it."""

    id: int
    tube: str
    ttr: int
    overdue: int  # seconds past its TTR (minus time-left)
    reserves: int
    timeouts: int
    copy: int | None = None  # the id of the copy put back, if one was

    def describe(self) -> str:
        what = f"put back as job {self.copy}" if self.copy else "not copied"
        return (
            f"job {self.id} on {self.tube}: reserved {self.overdue}s past its TTR of {self.ttr}s, "
            f"timed out {self.timeouts} times, reserved {self.reserves} times; {what}"
        )


class Watcher:
    """Finds reserved jobs of `tubes` past TTR + grace and, with copy, puts a copy of each back."""

    def __init__(
        self,
        conf: Beanstalkd,
        stuck: StuckSettings,
        tubes: tuple[str, ...],
        copy: bool = True,
        should_stop: Callable[[], bool] = lambda: False,
    ):
        self.queue = Queue(conf, should_stop=should_stop)  # its own connection: its `use` changes per copy
        self.tubes, self.copy = tubes, copy
        self.grace, self.interval, self.lookback = stuck.grace, stuck.interval, stuck.lookback
        self.copied: dict[int, int] = {}  # original id -> its copy's id (0: none), while the original exists
        self.copies_before: dict[int, int] = {}  # a copy's id -> how many copies led to it
        self.max_copies = conf.max_attempts  # a photo that hangs every filter is not copied for ever
        self.commands = 0  # sent to the server, for the cost figures
        self.next_pass = 0.0
        self.generation = -1
        self._forget()

    def _forget(self) -> None:
        self.due: list[tuple[float, int]] = []  # (when to check, job id), a heap
        self.newest = 0  # the newest job id known
        self.total = -1  # `stats` total-jobs when newest was learnt
        self.floor = self.floor_stop = 0  # the look-back's next id, and where it gives up
        self.to_find = 0  # jobs the server held at start that the look-back has not found yet

    def connect(self) -> Watcher:
        self.queue.connect()
        return self

    def close(self) -> None:
        self.queue.close()

    def tick(self) -> list[StuckJob]:
        """A pass, if `interval` has gone by since the last one; the stuck jobs it found."""
        now = time.monotonic()
        if now < self.next_pass:
            return []
        self.next_pass = now + self.interval
        try:
            return self.run_pass(now)
        except greenstalk.Error as exc:  # draining, out of memory: the collector goes on, the next pass tries again
            log.warning("stuck-job watcher: beanstalkd refused a command (%r); trying again next pass", exc)
            return []

    def run_pass(self, now: float | None = None, budget: int = MAX_CHECKS) -> list[StuckJob]:
        now = time.monotonic() if now is None else now
        found: list[StuckJob] = []
        stats = self._call(lambda c: c.stats())
        total = int(stats["total-jobs"])
        if self.queue.generation != self.generation or total < self.total:
            self._start(stats)  # first pass, a reconnect, or a restarted server: look back from the newest id
        elif total != self.total:
            self._learn_newest(now)
        while self.due and self.due[0][0] <= now and budget > 0:
            budget -= 1
            self._check(heapq.heappop(self.due)[1], now, found)
        while self.looking_back and budget > 0:
            budget -= 1
            self.floor -= 1
            if self._check(self.floor + 1, now, found):
                self.to_find -= 1
        return found

    @property
    def looking_back(self) -> bool:
        return self.to_find > 0 and self.floor > self.floor_stop

    def scan(self) -> list[StuckJob]:
        """Every stuck job the server holds now (within lookback ids), in one go."""
        return self.run_pass(budget=self.lookback + 1)

    # -- learning ids -------------------------------------------------------------------------
    def _start(self, stats: dict) -> None:
        self._forget()
        held = sum(int(stats[f"current-jobs-{s}"]) for s in ("ready", "reserved", "delayed", "buried"))
        newest = self._marker()  # a refused marker leaves the start for the next pass
        self.generation, self.total = self.queue.generation, int(stats["total-jobs"]) + 1  # the marker counted
        self.newest, self.floor, self.to_find = newest, newest - 1, held
        self.floor_stop = max(0, newest - 1 - self.lookback)

    def _learn_newest(self, now: float) -> None:
        total = int(self._call(lambda c: c.stats())["total-jobs"]) + 1
        newest = self._marker()
        for job_id in range(self.newest + 1, newest):
            heapq.heappush(self.due, (now, job_id))
        self.newest, self.total = newest, total

    def _marker(self) -> int:
        def put_and_delete(c: greenstalk.Client) -> int:
            c.use(MARKER_TUBE)
            job_id = c.put(b"", ttr=1)
            c.delete(job_id)
            return job_id

        self.commands += 2
        return self._call(put_and_delete)

    # -- one job ------------------------------------------------------------------------------
    def _check(self, job_id: int, now: float, found: list[StuckJob]) -> bool:
        """stats-job one id; schedule its next check. False when the server holds no such job."""
        try:
            s = self._call(lambda c: c.stats_job(job_id))
        except greenstalk.NotFoundError:
            self.copied.pop(job_id, None)
            self.copies_before.pop(job_id, None)
            return False
        if s["tube"] == MARKER_TUBE:  # one left behind by a watcher that died between put and delete
            with contextlib.suppress(greenstalk.NotFoundError):
                self._call(lambda c: c.delete(job_id))
            return True
        if s["tube"] not in self.tubes:
            return True  # a job never changes tube: never ours to watch
        left, ttr = float(s["time-left"]), int(s["ttr"])
        if s["state"] == "reserved":
            if left <= -self.grace and job_id not in self.copied:
                found.append(self._stuck(job_id, s))
            wait = ttr + self.grace if job_id in self.copied else left + self.grace
            heapq.heappush(self.due, (now + max(wait, MIN_WAIT), job_id))
            return True
        if job_id in self.copied:  # its holder let it go: stuck again later, it may be copied again
            self.copies_before[job_id] = self.copies_before.get(job_id, 0) + 1
            del self.copied[job_id]
        # ready or buried: reserved at the soonest now, so stuck a TTR from now at the soonest
        wait = left + ttr if s["state"] == "delayed" else ttr
        heapq.heappush(self.due, (now + max(wait, MIN_WAIT), job_id))
        return True

    def _stuck(self, job_id: int, s: dict) -> StuckJob:
        stuck = StuckJob(job_id, s["tube"], int(s["ttr"]), -int(s["time-left"]), int(s["reserves"]), int(s["timeouts"]))
        if not self.copy:
            return stuck
        before = self.copies_before.get(job_id, 0)
        if before >= self.max_copies:
            self.copied[job_id] = 0
            log.error(
                "%s; stuck again after %d copies (beanstalkd.max_attempts = %d): not copied again, "
                "a photo that hangs every filter?",
                stuck.describe(),
                before,
                self.max_copies,
            )
            return stuck
        try:
            body = self._call(lambda c: c.peek(job_id)).body

            def put_copy(c: greenstalk.Client) -> int:
                c.use(stuck.tube)
                return c.put(body, priority=int(s["pri"]), ttr=stuck.ttr)

            copy_id = self._call(put_copy)
        except greenstalk.NotFoundError:  # finished between the two commands
            return stuck
        except greenstalk.Error as exc:  # draining, out of memory: the next check tries again
            log.error("job %s is stuck past its TTR, and its copy was refused: %r", job_id, exc)
            return stuck
        self.copied[job_id], self.copies_before[copy_id] = copy_id, before + 1
        stuck = dataclasses.replace(stuck, copy=copy_id)
        log.warning("%s (beanstalkd never timed it out: docs/reliability.md)", stuck.describe())
        return stuck

    def _call(self, fn: Callable[[greenstalk.Client], object]):
        self.commands += 1
        return self.queue.call(fn)


def start(conf: Beanstalkd, stuck: StuckSettings, tubes: tuple[str, ...], should_stop) -> Watcher | None:
    """The collector's watcher, or None when [stuck] watch is off."""
    if stuck.watch == "off":
        return None
    log.info("watching %s for jobs beanstalkd forgets to time out (grace %gs)", ", ".join(tubes), stuck.grace)
    return Watcher(conf, stuck, tubes, should_stop=should_stop).connect()


# -- the probe: does this server time out a job whose holder went silent? -------------------
PATTERNS = ("reserve", "reserve-with-timeout 0", "reserve-with-timeout 1", "reserve, touch")


@dataclasses.dataclass(frozen=True)
class Trial:
    pattern: str
    state: str  # at TTR + grace: "ready" when the server timed the job out
    time_left: int
    timeouts: int

    @property
    def lost(self) -> bool:
        return self.state == "reserved"


def probe(conf: Beanstalkd, trials: int = 8, ttr: int = 2, grace: float = 2.0) -> list[Trial]:
    """Put `trials` jobs with TTR `ttr` on a private tube, each reserved by a connection of its own
    that then goes silent without closing; after ttr + grace, stats-job tells which came back."""
    tube = f"facegrid-probe-{os.getpid()}-{secrets.token_hex(3)}"
    addr = (conf.host, conf.port)
    try:
        owner = greenstalk.Client(addr, encoding=None, use=tube)
    except NETWORK_ERRORS as exc:
        raise QueueUnavailable(f"cannot reach beanstalkd at {conf.host}:{conf.port} ({exc})") from None
    holders: list[greenstalk.Client] = []
    jobs: list[tuple[int, str]] = []
    try:
        for i in range(trials):
            pattern = PATTERNS[i % len(PATTERNS)]
            jobs.append((owner.put(b"facegrid probe", ttr=ttr), pattern))
            holders.append(greenstalk.Client(addr, encoding=None, watch=tube))
            _hold(holders[-1], pattern)
        time.sleep(ttr + grace)  # the holders say nothing from here on
        out = []
        for job_id, pattern in jobs:
            s = owner.stats_job(job_id)
            out.append(Trial(pattern, str(s["state"]), int(s["time-left"]), int(s["timeouts"])))
        return out
    finally:
        for h in holders:
            h.close()
        _clean(owner, [j for j, _ in jobs])
        owner.close()


def _hold(c: greenstalk.Client, pattern: str) -> None:
    job = c.reserve(timeout={"reserve-with-timeout 0": 0, "reserve-with-timeout 1": 1}.get(pattern))
    if pattern == "reserve, touch":
        c.touch(job)


def _clean(owner: greenstalk.Client, ids: list[int]) -> None:
    """Delete the probe's jobs; one held by a connection just closed is deletable a moment later."""
    deadline = time.monotonic() + 5
    for job_id in ids:
        while True:
            try:
                owner.delete(job_id)
                break
            except greenstalk.NotFoundError:
                try:
                    if owner.stats_job(job_id)["state"] != "reserved" or time.monotonic() > deadline:
                        break
                except greenstalk.NotFoundError:
                    break
                time.sleep(0.05)


# -- scripts/status --check ---------------------------------------------------------------
def check(settings: Settings, as_json: bool, trials: int = 8) -> int:
    """Probe the server's TTR handling and list stuck jobs on the grid's tubes; 1 if either is bad."""
    b = settings.beanstalkd
    tubes = (b.images_tube, b.people_tube)
    watcher = Watcher(b, settings.stuck, tubes, copy=False).connect()
    try:
        stuck = watcher.scan()
        version = str(watcher.queue.stats().get("version", "?"))
    finally:
        watcher.close()
    ttr, grace = 2, 2.0
    trials_done = probe(b, trials, ttr, grace)
    lost = [t for t in trials_done if t.lost]
    if as_json:
        report = {
            "beanstalkd": f"{b.host}:{b.port}",
            "version": version,
            "probe": {"ttr": ttr, "checked_after": ttr + grace, "trials": [dataclasses.asdict(t) for t in trials_done]},
            "lost": len(lost),
            "stuck": [dataclasses.asdict(s) for s in stuck],
            "loses_expiries": bool(lost or stuck),
        }
        print(json.dumps(report, indent=2))
    else:
        print(_render(f"beanstalkd {version} at {b.host}:{b.port}", trials_done, stuck, settings.stuck, ttr, grace))
    return 1 if lost or stuck else 0


def _render(server: str, trials: list[Trial], stuck: list[StuckJob], conf: StuckSettings, ttr: int, grace: float):
    lost = [t for t in trials if t.lost]
    by_pattern = ", ".join(
        f"{p} {sum(t.lost for t in trials if t.pattern == p)}/{sum(t.pattern == p for t in trials)}" for p in PATTERNS
    )
    lines = [
        f"{server}: {len(trials)} probe jobs with a TTR of {ttr}s, each reserved by a connection that then went silent",
        f"  still reserved {grace:g}s after their TTR: {len(lost)} of {len(trials)} ({by_pattern})",
    ]
    if lost:
        watch = "on" if conf.watch == "on" else "OFF: turn it on"
        lines.append(
            "  this server loses TTR expiries: a frozen filter keeps its photo until its connection closes; "
            f"the collector puts such photos back after {conf.grace:g}s ([stuck] watch = {watch}; "
            "docs/reliability.md)"
        )
    else:
        lines.append("  every probe job came back at its TTR this time (the defect comes and goes: run it again)")
    lines.append(f"stuck jobs on the grid's tubes: {len(stuck) or 'none'}")
    lines += [f"  {s.describe().replace('; not copied', '')}" for s in stuck]
    return "\n".join(lines)
