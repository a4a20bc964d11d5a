"""Logging: to stderr, every line with time, host and pid; -v/-q set the level."""

from __future__ import annotations

import logging
import socket
import sys
import time

from .textsafe import printable

HOST = socket.gethostname()
FORMAT = "%(asctime)s %(hostname)s[%(process)d] %(levelname)s %(name)s: %(message)s"


class SafeFormatter(logging.Formatter):
    """Control characters in a message (a hostile path, host or reason) are escaped, never sent raw."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = printable(record.message)
        return super().formatMessage(record)


class _HostFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.hostname = HOST
        return True


def setup(verbose: int = 0, quiet: int = 0) -> None:
    level = logging.INFO - 10 * verbose + 10 * quiet
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_HostFilter())
    handler.setFormatter(SafeFormatter(FORMAT, "%Y-%m-%d %H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(logging.DEBUG, min(logging.CRITICAL, level)))


class RateLog:
    """One log line every N events or every T seconds, whichever comes first."""

    def __init__(self, logger: logging.Logger, what: str, every: int = 100, seconds: float = 30.0):
        self.logger, self.what, self.every, self.seconds = logger, what, max(1, every), seconds
        self.start = self.last_time = time.monotonic()
        self.count = self.last_count = 0

    def add(self, n: int = 1, extra: str = "") -> None:
        self.count += n
        now = time.monotonic()
        if self.count - self.last_count >= self.every or now - self.last_time >= self.seconds:
            self.emit(extra, now)

    def emit(self, extra: str = "", now: float | None = None) -> None:
        now = now or time.monotonic()
        recent = (self.count - self.last_count) / max(now - self.last_time, 1e-9)
        overall = self.count / max(now - self.start, 1e-9)
        self.logger.info(
            "%d %s (%.1f/s now, %.1f/s overall)%s", self.count, self.what, recent, overall, f" {extra}" if extra else ""
        )
        self.last_time, self.last_count = now, self.count
