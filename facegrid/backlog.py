"""The bound on a tube's backlog: whoever puts jobs waits while the tube holds enough.

The queuer bounds the images tube with it, the filter the people tube.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from .beanstalk import Queue

log = logging.getLogger("facegrid.beanstalk")


class Backlog:
    """Wait while a tube holds max_ready or more ready jobs (0: never wait).

    It asks the server once per max_ready - ready puts, not before every put.
    """

    def __init__(
        self,
        queue: Queue,
        tube: str,
        max_ready: int,
        should_stop: Callable[[], bool],
        recheck: int = 0,
        waiting_for: str = "the workers",
    ):
        self.queue, self.tube, self.max_ready, self.should_stop = queue, tube, max_ready, should_stop
        self.recheck, self.waiting_for = recheck, waiting_for  # recheck: ask at least every N puts
        self.budget = 0  # puts allowed before asking the server again

    def wait(self) -> None:
        if not self.max_ready:
            return
        logged = False
        while self.budget <= 0 and not self.should_stop():
            ready = self.queue.stats_tube(self.tube)["current-jobs-ready"]
            self.budget = self.max_ready - ready
            if self.recheck:
                self.budget = min(self.budget, self.recheck)
            if self.budget <= 0:
                if not logged:
                    log.info(
                        "tube %s holds %d ready jobs (bound %d): waiting for %s",
                        self.tube,
                        ready,
                        self.max_ready,
                        self.waiting_for,
                    )
                    logged = True
                time.sleep(0.2)
        self.budget -= 1
