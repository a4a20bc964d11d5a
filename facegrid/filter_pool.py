"""Run N filter workers as child processes and keep them running.

A crash in dlib or OpenCV takes down one child, not the pool: the parent logs
why (the signal, or the reason the child sent up its pipe before it exited) and
starts another (the job it held goes back to the tube when its connection
closes). A child that exits 2 (settings) or 3 (no beanstalkd at the address, or
not a beanstalkd) ends the pool with its reason and that exit code: every other
worker would fail alike, and a restart cannot fix it. SIGTERM/SIGINT to the parent is passed on as SIGTERM, so
each child finishes its current job; a second one (not the same one delivered
twice within 0.1 s) ends them at once (SIGKILL).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import multiprocessing.connection as mp_connection
import os
import signal
import time
from multiprocessing.process import BaseProcess

from .errors import EXIT_QUEUE, EXIT_USAGE, FacegridError
from .settings import Settings

log = logging.getLogger("facegrid.filter_pool")

# What one filter worker needs: a base (the models in use, and a JPEG, which decodes
# at the working size) plus, for a photo that must be decoded at full size (PNG,
# WebP, TIFF), about 8 bytes a pixel: its pixels and Pillow's premultiplied copy
# while it shrinks them. A worker may be handed a photo of up to filter.max_pixels,
# so that is what --workers auto budgets for. The peaks behind these constants are
# measured by scripts/bench.py --only memory (docs/benchmarks.md, "Large PNGs and
# --workers auto").
WORKER_BASE_BYTES = 256 * 1024 * 1024
WORKER_BYTES_PER_PIXEL = 8
WORKER_PEAK_BYTES = 512 * 1024 * 1024  # the base with JPEG headroom: the least any worker is given
FATAL_CODES = (EXIT_USAGE, EXIT_QUEUE)  # a restart cannot fix these
REPEAT_WINDOW = 0.1  # seconds: a stop signal repeated within this is the same request


def available_memory() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def auto_workers(need: int = WORKER_PEAK_BYTES) -> int:
    """min(cores, available memory / measured need per worker), at least 1."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cores, available_memory() // need))


def worker_need(max_pixels: int) -> int:
    """Memory one worker may need: the base plus the largest photo it accepts, decoded."""
    return max(WORKER_PEAK_BYTES, WORKER_BASE_BYTES + WORKER_BYTES_PER_PIXEL * max_pixels)


def resolve_workers(value: str, max_pixels: int = 180_000_000) -> int:
    return auto_workers(worker_need(max_pixels)) if value == "auto" else int(value)


def _child(settings: Settings, burst: bool, index: int, why: mp_connection.Connection) -> None:
    """One worker. Before it exits with an error it sends the one-line reason up `why`,
    so the pool's line says why the worker died, not only its exit code."""
    from . import filter_worker
    from .delivery import Stopper

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C reaches us through the parent
    stopper = Stopper(signals=(signal.SIGTERM,)).install()
    code, reason = 1, ""
    try:
        code = filter_worker.run_worker(settings, burst, stopper)
    except FacegridError as exc:  # the pool logs it, with what it does about it
        code, reason = exc.exit_code, str(exc)
    except Exception as exc:  # the one boundary of the worker process: its reason reaches the pool
        log.exception("worker %d: unexpected failure", index)
        reason = f"{type(exc).__name__}: {exc}"[:300]
    finally:
        with contextlib.suppress(OSError):
            why.send(reason)
        logging.shutdown()
        os._exit(code)


class _Pool:
    """The pool's state: its children, the pipes their reasons come up, their recent
    restarts, how many stop requests it has had, and the exit code it will end with."""

    def __init__(self, settings: Settings, burst: bool) -> None:
        self.ctx = mp.get_context("fork")
        self.settings, self.burst = settings, burst
        self.procs: dict[int, BaseProcess] = {}
        self.reasons: dict[int, mp_connection.Connection] = {}
        self.restarts: dict[int, list[float]] = {}
        self.stops, self.stopped_at = 0, 0.0
        self.code = 0

    def start(self, i: int) -> None:
        """Start worker i, with the pipe it sends its reason up before it exits."""
        read, write = self.ctx.Pipe(duplex=False)
        p = self.ctx.Process(
            target=_child, args=(self.settings, self.burst, i, write), name=f"filter-{i}", daemon=False
        )
        p.start()
        write.close()
        self.procs[i], self.reasons[i] = p, read

    def reason(self, i: int) -> str:
        """What worker i said before it ended ('' if it died without a word: a signal, a crash in C)."""
        conn = self.reasons.pop(i)
        try:
            return str(conn.recv()) if conn.poll() else ""
        except (EOFError, OSError):
            return ""
        finally:
            conn.close()

    def stop_all(self, sig: int = signal.SIGTERM) -> None:
        """Send sig to every worker still alive."""
        for p in self.procs.values():
            if p.is_alive() and p.pid is not None:
                os.kill(p.pid, sig)

    def on_signal(self, signum: int, frame: object) -> None:
        """SIGTERM/SIGINT to the parent: the first asks the workers to finish their
        current job, a second (not a repeat within REPEAT_WINDOW) ends them at once."""
        now = time.monotonic()
        if self.stops == 1 and now - self.stopped_at < REPEAT_WINDOW:
            log.info("got %s again at once: still finishing the current job", signal.Signals(signum).name)
            return  # one request delivered twice (to the group and by a supervisor), not a second one
        self.stops += 1
        self.stopped_at = now
        log.info(
            "got %s: asking %d worker(s) to %s",
            signal.Signals(signum).name,
            len(self.procs),
            "finish their current job" if self.stops == 1 else "exit now",
        )
        # A child's Python handler cannot run inside a long dlib call, so a second
        # SIGTERM could wait for the call to end: the second request is SIGKILL.
        # The job it held goes back to the tube when its connection closes.
        self.stop_all(signal.SIGTERM if self.stops == 1 else signal.SIGKILL)

    def ended(self, i: int, p: BaseProcess) -> None:
        """Worker i has ended: reap it, then stop the pool (a fatal code), log it
        (while stopping) or start it again after a back-off (a crash)."""
        p.join()
        del self.procs[i]
        rc, said = p.exitcode, self.reason(i)
        if rc is None or rc == 0:  # None: never after join(), but not promised by the type
            return
        if rc in FATAL_CODES:  # settings, or no beanstalkd at the address: every worker would fail alike
            if not self.code:
                log.error("worker %d: %s; stopping the pool (exit code %d)", i, said or "no reason given", rc)
                self.stops = max(self.stops, 1)
                self.stop_all()
            self.code = self.code or rc
            return
        why = f"signal {signal.Signals(-rc).name}" if rc < 0 else f"exit code {rc}"
        why += f": {said}" if said else ""
        if self.stops:
            log.warning("worker %d ended by %s while stopping", i, why)
            return
        self.restart(i, why)

    def restart(self, i: int, why: str) -> None:
        """Start crashed worker i again, waiting longer the more often it died in the last minute."""
        recent = [t for t in self.restarts.get(i, []) if time.monotonic() - t < 60]
        self.restarts[i] = recent + [time.monotonic()]
        delay = min(2 ** len(recent) - 1, 30)
        log.error("worker %d died (%s); restarting it in %ds", i, why, delay)
        time.sleep(delay)
        self.start(i)


def run_pool(settings: Settings, workers: int, burst: bool) -> int:
    """Run `workers` filter workers until all have ended; the exit code is the first fatal one, else 0."""
    pool = _Pool(settings, burst)
    for i in range(workers):
        pool.start(i)
    signal.signal(signal.SIGTERM, pool.on_signal)
    signal.signal(signal.SIGINT, pool.on_signal)
    log.info("filter pool: %d worker(s)%s", workers, ", burst mode" if burst else "")
    while pool.procs:
        mp_connection.wait([p.sentinel for p in pool.procs.values()], timeout=0.2)  # wakes when a worker ends
        for i, p in list(pool.procs.items()):
            if not p.is_alive():
                pool.ended(i, p)
    return pool.code
