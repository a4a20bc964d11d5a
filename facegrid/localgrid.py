"""A private grid on this machine: beanstalkd on a free loopback port, and the real scripts.

Used by scripts/evaluate.py to push a labelled folder through queuer.py,
filter.py and collector.py exactly as a user would, without touching any grid
that is already running.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from .errors import UsageError
from .settings import ROOT

MAX_JOB_SIZE = 16 * 1024 * 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """beanstalkd -l 127.0.0.1 -p <free port> -z 16 MiB -b <folder>/binlog."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> Server:
        exe = shutil.which("beanstalkd")
        if exe is None:
            raise UsageError("beanstalkd is not installed; run scripts/setup.sh")
        binlog = self.folder / "binlog"
        binlog.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [exe, "-l", "127.0.0.1", "-p", str(self.port), "-z", str(MAX_JOB_SIZE), "-b", str(binlog)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                if self.proc.poll() is not None:
                    err = self.proc.stderr.read().decode()[:300] if self.proc.stderr else ""
                    raise UsageError(f"beanstalkd exited: {err}") from None
                time.sleep(0.05)
        raise UsageError(f"beanstalkd did not answer on {self.address}")

    def __exit__(self, *exc) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(10)


def script(name: str, *args: object) -> list[str]:
    return [sys.executable, str(ROOT / name), *map(str, args)]


def run_grid(photos: list[Path], db: Path, folder: Path, workers: int = 2, extra: tuple[str, ...] = ()) -> None:
    """Queue the folders, then run filter workers and the collector until both tubes drain.

    extra: more flags for every script (such as --set filter.upsample=2).
    Logs go to folder/grid.log; a script that fails raises UsageError with its tail.
    """
    folder.mkdir(parents=True, exist_ok=True)
    logf = folder / "grid.log"
    with Server(folder) as server, open(logf, "ab") as err:
        common = ["--beanstalkd", server.address, "-q", *extra]

        def check(codes: list[int], what: str) -> None:
            if any(codes):
                tail = logf.read_text(errors="replace")[-800:]
                raise UsageError(f"{what} exited {codes}; see {logf}: {tail}")

        q = subprocess.run(
            script(
                "queuer.py", *photos, "--state", folder / "queuer-state.sqlite", "--max-ready", 0, "--requeue", *common
            ),
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
        check([q.returncode], "queuer.py")
        procs = [
            subprocess.Popen(
                script("collector.py", "--db", db, "--burst", *common), stdout=subprocess.DEVNULL, stderr=err
            ),
            subprocess.Popen(
                script("filter.py", "--workers", workers, "--burst", *common), stdout=subprocess.DEVNULL, stderr=err
            ),
        ]
        check([p.wait() for p in procs], "collector.py and filter.py")
