"""A private grid on this machine: beanstalkd on a free loopback port, and the real scripts.

Used by scripts/evaluate.py to push a labelled folder through queuer.py,
filter.py and collector.py exactly as a user would, without touching any grid
that is already running; its Server is also the tests' and the benchmarks'.
It is development code, not part of the installed package: the tests import it
as `localgrid` (tests/ is on their path), and scripts/evaluate.py and the
benchmarks put tests/ on theirs first.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from facegrid.beanstalk import empty_tube
from facegrid.errors import UsageError

ROOT = Path(__file__).resolve().parent.parent  # the checkout whose scripts run

MAX_JOB_SIZE = 16 * 1024 * 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def in_netns(netns: str | None, cmd: list[str]) -> list[str]:
    """cmd run inside network namespace netns (None: as it is)."""
    return ["ip", "netns", "exec", netns, *cmd] if netns else cmd


class Server:
    """A private beanstalkd: -l LISTEN -p PORT -z MAX_JOB_SIZE -b BINLOG, optionally in a network namespace.

    The one launcher of the tests (tests/conftest.py), scripts/bench.py and
    scripts/evaluate.py. ``host`` is the address clients use, ``listen`` what
    beanstalkd binds (default: host), ``netns`` runs it with ``ip netns exec``.
    """

    def __init__(
        self,
        binlog: Path,
        *,
        host: str = "127.0.0.1",
        listen: str | None = None,
        port: int = 0,
        max_job_size: int = MAX_JOB_SIZE,
        netns: str | None = None,
    ):
        self.binlog, self.host, self.listen = Path(binlog), host, listen or host
        self.port, self.max_job_size, self.netns = port or free_port(), max_job_size, netns
        self.proc: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def command(self, cmd: list[str]) -> list[str]:
        """cmd as run beside this beanstalkd (inside its namespace, if any)."""
        return in_netns(self.netns, cmd)

    def _answers(self) -> bool:
        if self.netns:
            probe = f"import socket; socket.create_connection(({self.host!r}, {self.port}), 1)"
            return subprocess.run(self.command([sys.executable, "-c", probe]), capture_output=True).returncode == 0
        try:
            socket.create_connection((self.host, self.port), timeout=0.5).close()
            return True
        except OSError:
            return False

    def start(self) -> Server:
        exe = shutil.which("beanstalkd")
        if exe is None:
            raise UsageError("beanstalkd is not installed; run scripts/setup.sh")
        self.binlog.mkdir(parents=True, exist_ok=True)
        cmd = [exe, "-l", self.listen, "-p", str(self.port), "-z", str(self.max_job_size), "-b", str(self.binlog)]
        self.proc = subprocess.Popen(self.command(cmd), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self._answers():
                return self
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace")[:300] if self.proc.stderr else ""
                raise UsageError(f"beanstalkd exited: {err}")
            time.sleep(0.05)
        raise UsageError(f"beanstalkd did not answer on {self.address}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(10)
        self.proc = None

    def restart(self) -> None:
        """kill -9 and start again on the same port and binlog."""
        self.stop(signal.SIGKILL)
        self.start()

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def client(self, **kw):
        import greenstalk

        return greenstalk.Client((self.host, self.port), encoding=None, **kw)

    def tube(self, name: str) -> dict:
        """stats-tube; a tube beanstalkd has dropped (empty, nobody on it) reads as empty.

        Any other failure (beanstalkd gone, say) is raised, not read as an empty tube.
        """
        import greenstalk

        with self.client() as c:
            try:
                return c.stats_tube(name)
            except greenstalk.NotFoundError:
                return empty_tube(name)

    def drain(self, tube: str) -> None:
        """Delete every ready job of tube."""
        import greenstalk

        with self.client(watch=tube) as c:
            while True:
                try:
                    c.delete(c.reserve(timeout=0))
                except greenstalk.TimedOutError:
                    return


def script(name: str, *args: object) -> list[str]:
    return [sys.executable, str(ROOT / name), *map(str, args)]


def run_grid(photos: list[Path], db: Path, folder: Path, workers: int = 2, extra: tuple[str, ...] = ()) -> None:
    """Queue the folders, then run filter workers and the collector until both tubes drain.

    extra: more flags for every script (such as --set filter.upsample=2).
    Logs go to folder/grid.log; a script that fails raises UsageError with its tail.
    """
    folder.mkdir(parents=True, exist_ok=True)
    logf = folder / "grid.log"
    with Server(folder / "binlog") as server, open(logf, "ab") as err:
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


class Namespaces:
    """Network namespaces joined by veth pairs, for the network-fault tests and the benchmarks.

    Nothing of the host's own network is touched except the host ends of links
    made here; ``close`` removes every namespace and link it made. Needs root
    and iproute2's ``ip``; a failure raises PermissionError with ip's words.
    """

    def __init__(self, tag: str):
        self.tag = tag
        self.names: list[str] = []
        self.host_links: list[str] = []

    @staticmethod
    def unavailable() -> str | None:
        """Why namespaces cannot be made here, or None."""
        if os.geteuid() != 0:
            return "needs root (ip netns add)"
        if not shutil.which("ip"):
            return "the ip tool (iproute2) is not installed"
        return None

    @staticmethod
    def ip(*args: str, ns: str | None = None) -> None:
        cmd = ["ip", "-n", ns, *args] if ns else ["ip", *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        if proc.returncode:
            raise PermissionError(f"{' '.join(cmd)}: {proc.stderr.strip()}")

    def add(self, name: str) -> str:
        """A new namespace named tag + name, with its loopback up."""
        ns = self.tag + name
        self.ip("netns", "add", ns)
        self.names.append(ns)
        self.ip("link", "set", "lo", "up", ns=ns)
        return ns

    def link(self, a: str | None, b: str, addr_a: str, addr_b: str, name: str) -> tuple[str, str]:
        """A veth pair from a (None: the host) to namespace b, with a /30 address at each end.

        Returns the two interface names (a's, b's)."""
        ia, ib = f"{self.tag}{name}a", f"{self.tag}{name}b"
        where_a = ["netns", a] if a else []
        self.ip("link", "add", ia, *where_a, "type", "veth", "peer", "name", ib, "netns", b)
        if not a:
            self.host_links.append(ia)
        self.ip("addr", "add", f"{addr_a}/30", "dev", ia, ns=a)
        self.ip("addr", "add", f"{addr_b}/30", "dev", ib, ns=b)
        self.ip("link", "set", ia, "up", ns=a)
        self.ip("link", "set", ib, "up", ns=b)
        return ia, ib

    def set_link(self, ns: str | None, interface: str, up: bool) -> None:
        self.ip("link", "set", interface, "up" if up else "down", ns=ns)

    def close(self) -> None:
        for ns in self.names:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
        for link in self.host_links:
            subprocess.run(["ip", "link", "del", link], capture_output=True, timeout=30)
        self.names, self.host_links = [], []

    def __enter__(self) -> Namespaces:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
