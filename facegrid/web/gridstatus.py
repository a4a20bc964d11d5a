"""The Status page's figures: status.py's snapshot (queues, rates, ETA, database counts) and
buried.py's list of buried jobs with their reasons, sampled as the page asks for them."""

from __future__ import annotations

import threading
import time

from .. import buried, envelope, status
from ..beanstalk import NETWORK_ERRORS, Queue
from ..errors import QueueUnavailable
from ..settings import Settings

MIN_SAMPLE_GAP = 1.0  # seconds: pages polling together share a sample
BURIED_EVERY = 15.0  # seconds between scans for buried jobs (a scan reads every job id)


class GridStatus:
    def __init__(self, settings: Settings, db_paths: list[str]):
        self.settings = settings
        self.db_paths = db_paths
        self.history = status.History()
        self.queue: Queue | None = None
        self.max_job: int | None = None
        self.buried: list[dict] = []
        self.buried_at = 0.0
        self.lock = threading.Lock()
        self.keys = envelope.load_keys(settings.grid.key_file)  # a forged job shows why it was buried

    def snapshot(self) -> dict:
        """status.snapshot for the first database, every database's counts, the buried jobs; or
        {"error": ...} when beanstalkd cannot be reached (the page says so and keeps trying)."""
        b = self.settings.beanstalkd
        with self.lock:
            try:
                self._sample()
            except (QueueUnavailable, *NETWORK_ERRORS) as exc:
                self.close()
                self.history = status.History()
                return {"beanstalkd": f"{b.host}:{b.port}", "error": str(exc), "time": time.time(), "dbs": self._dbs()}
            snap = status.snapshot(self.settings, self.history, self.db_paths[0], self.max_job)
            snap["dbs"] = self._dbs()
            snap["buried_jobs"] = self.buried
            return snap

    def _sample(self) -> None:
        b = self.settings.beanstalkd
        if self.queue is None:
            self.queue = Queue(b, should_stop=lambda: True).connect()  # a lost connection: an error, no retry loop
            self.max_job = self.queue.max_job_size()
        last = self.history.samples[-1].at if self.history.samples else 0.0
        if time.monotonic() - last >= MIN_SAMPLE_GAP:
            self.history.add(status.take_sample(self.queue, (b.images_tube, b.people_tube)))
        tubes = self.history.samples[-1].tubes
        if not any(t["buried"] for t in tubes.values()):
            self.buried = []
        elif time.monotonic() - self.buried_at >= BURIED_EVERY:
            self._scan_buried()

    def _scan_buried(self) -> None:
        b = self.settings.beanstalkd
        assert self.queue is not None and self.queue.client is not None
        client = self.queue.client
        jobs, _ = buried.scan(b, client, [b.images_tube, b.people_tube])
        for job in jobs[:50]:
            buried.explain(client, job, self.db_paths[0], self.keys)
        self.buried = [j.as_dict() for j in jobs[:50]]
        self.buried_at = time.monotonic()

    def _dbs(self) -> list[dict]:
        return [{"database": path, "counts": status.db_counts(path)} for path in self.db_paths]

    def close(self) -> None:
        if self.queue is not None:
            self.queue.close()
            self.queue = None
