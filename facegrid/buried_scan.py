"""The read-only scan behind scripts/buried list: every buried job of some tubes, by id.

peek-buried shows only the first buried job of a tube, and listing must not change
anything. beanstalkd 1.12 answers ``stats-job <id>`` for any job in any state, and job
ids are handed out in increasing order, so the ids are scanned with stats-job (pipelined
over a raw socket, Scanner) until every job that stats-tube counts as buried has been
found. buried.py then peeks the bodies for the reasons.
"""

from __future__ import annotations

import contextlib
import dataclasses
import socket

import greenstalk

from .errors import QueueUnavailable
from .settings import Beanstalkd

SCAN_CHUNK = 1000  # stats-job commands in flight at once
SCAN_TAIL = 100_000  # ids scanned past the last known id before giving up


@dataclasses.dataclass
class BuriedJob:
    id: int
    tube: str
    pri: int
    ttr: int
    age: int
    reserves: int
    releases: int
    timeouts: int
    kicks: int
    path: str = ""
    image_id: str = ""
    reason: str = ""

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


class Scanner:
    """stats-job for a range of ids over one raw socket, pipelined.

    Its own small client because greenstalk sends one command and waits for its
    answer: a scan asks about up to SCAN_TAIL ids, SCAN_CHUNK at a time. Whatever goes
    wrong on the wire (a dropped connection, a timeout, an answer that is not
    beanstalkd's) ends as one QueueUnavailable line, never a traceback."""

    def __init__(self, conf: Beanstalkd):
        self.address = f"{conf.host}:{conf.port}"
        try:
            self.sock = socket.create_connection((conf.host, conf.port), timeout=max(conf.io_timeout, 10))
        except OSError as exc:
            raise QueueUnavailable(
                f"cannot reach beanstalkd at {conf.host}:{conf.port} ({exc}); pass --beanstalkd HOST:PORT"
            ) from None
        self.reader = self.sock.makefile("rb")

    def close(self) -> None:
        self.reader.close()
        self.sock.close()

    def stats(self, first: int, last: int) -> dict[int, dict]:
        """{id: stats} for the jobs that exist among first..last."""
        try:
            return self._stats(first, last)
        except (OSError, EOFError, ValueError, IndexError) as exc:
            raise QueueUnavailable(
                f"beanstalkd at {self.address} stopped answering during the scan ({type(exc).__name__}: {exc}); "
                "check it is running and run scripts/buried again"
            ) from None

    def _stats(self, first: int, last: int) -> dict[int, dict]:
        self.sock.sendall(b"".join(b"stats-job %d\r\n" % i for i in range(first, last + 1)))
        out = {}
        for job_id in range(first, last + 1):
            line = self.reader.readline()
            if not line:
                raise EOFError("the connection was closed")
            if line.startswith(b"OK "):
                size = int(line.split()[1])
                body = self.reader.read(size + 2)
                if len(body) != size + 2:
                    raise EOFError("the connection was closed inside an answer")
                out[job_id] = _parse_yaml(body.decode("utf-8", "replace"))
            elif not line.startswith(b"NOT_FOUND"):
                raise QueueUnavailable(
                    f"beanstalkd at {self.address} answered {line[:60]!r} to stats-job {job_id}; "
                    "is that address a beanstalkd?"
                )
        return out


def _parse_yaml(text: str) -> dict:
    """beanstalkd's flat YAML dictionaries: 'key: value' lines."""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition(": ")
        if sep:
            value = value.strip()
            out[key.strip()] = int(value) if value.lstrip("-").isdigit() else value
    return out


def buried_counts(client: greenstalk.Client, tubes: list[str]) -> dict[str, int]:
    out = {}
    for tube in tubes:
        try:
            out[tube] = int(client.stats_tube(tube)["current-jobs-buried"])
        except greenstalk.NotFoundError:
            out[tube] = 0
    return out


def _known_ids(client: greenstalk.Client, tubes: list[str]) -> list[int]:
    """Ids that certainly exist (the first ready/delayed/buried of each tube)."""
    ids = []
    for tube in tubes:
        try:
            client.use(tube)
        except greenstalk.Error:
            continue
        for peek in (client.peek_ready, client.peek_delayed, client.peek_buried):
            with contextlib.suppress(greenstalk.NotFoundError):
                ids.append(peek().id)
    return ids


def scan(conf: Beanstalkd, client: greenstalk.Client, tubes: list[str]) -> tuple[list[BuriedJob], dict[str, int]]:
    """Every buried job on these tubes (read-only), and the counts stats-tube reported."""
    want = buried_counts(client, tubes)
    if not any(want.values()):
        return [], want
    horizon = max([int(client.stats().get("total-jobs", 0))] + _known_ids(client, tubes))
    found: list[BuriedJob] = []
    scanner = Scanner(conf)
    try:
        job_id = 1
        while len(found) < sum(want.values()) and job_id <= horizon + SCAN_TAIL:
            last = job_id + SCAN_CHUNK - 1
            for jid, st in scanner.stats(job_id, last).items():
                horizon = max(horizon, jid)
                if st.get("state") == "buried" and st.get("tube") in want:
                    found.append(_job(jid, st))
            job_id = last + 1
    finally:
        scanner.close()
    return found, want


def _job(jid: int, st: dict) -> BuriedJob:
    return BuriedJob(
        jid,
        str(st.get("tube")),
        int(st.get("pri", 0)),
        int(st.get("ttr", 0)),
        int(st.get("age", 0)),
        int(st.get("reserves", 0)),
        int(st.get("releases", 0)),
        int(st.get("timeouts", 0)),
        int(st.get("kicks", 0)),
    )
