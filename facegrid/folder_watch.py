"""queuer.py --watch: a queuer that keeps running and queues files that appear or change.

On Linux it listens with inotify (through ctypes: no new dependency) on every
folder below the watched ones, new folders included; elsewhere, or when the
kernel refuses more watches or drops events, it walks the folders again every
[queuer] rescan seconds. Either way a new or changed file waits in `pending`
until its size and mtime have stayed the same for [queuer] settle seconds, so a
photo still being copied in is never queued half-written. Then it is queued as
the one-shot queuer queues it (queuer.Queuer.queue_file: the same state file, the same
checks), so a photo seen twice is queued once.

SIGTERM or SIGINT: the loop ends within a tick, the state is committed, exit 0.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import select
import struct
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from . import envelope, queuer
from .errors import UsageError
from .settings import Settings
from .walking import display_path, inside, walk

log = logging.getLogger("facegrid.queuer")
TICK = 0.2  # seconds between looks at the pending files (and at the stop flag)

IN_MODIFY, IN_ATTRIB, IN_CLOSE_WRITE, IN_MOVED_TO, IN_CREATE = 0x2, 0x4, 0x8, 0x80, 0x100
IN_DELETE_SELF, IN_MOVE_SELF, IN_Q_OVERFLOW, IN_IGNORED, IN_ISDIR = 0x400, 0x800, 0x4000, 0x8000, 0x40000000
IN_NONBLOCK, IN_CLOEXEC = 0o4000, 0o2000000
MASK = IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE_SELF | IN_MOVE_SELF
EVENT = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len; then len bytes of name


class Inotify:
    """The kernel's inotify through libc: watch folders, read (path, is_folder) of what changed."""

    def __init__(self) -> None:
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self.libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
        self.folders: dict[int, bytes] = {}
        self.overflowed = False

    @classmethod
    def open(cls) -> Inotify | None:
        try:
            return cls()
        except (OSError, AttributeError) as exc:  # not Linux, or no inotify: rescans only
            log.info("inotify is not available here (%s); walking the folders every [queuer] rescan seconds", exc)
            return None

    def add(self, folder: str) -> None:
        """Watch one folder (its files and its direct subfolders' creation); OSError when refused."""
        path = os.fsencode(folder)
        wd = self.libc.inotify_add_watch(self.fd, path, MASK)
        if wd < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), folder)
        self.folders[wd] = path

    def read(self, timeout: float) -> list[tuple[str, bool]]:
        """What changed within timeout seconds: (path, is a folder). Sets overflowed when events were lost."""
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return []
        try:
            data = os.read(self.fd, 1 << 16)
        except BlockingIOError:
            return []
        out, pos = [], 0
        while pos + EVENT.size <= len(data):
            wd, mask, _, size = EVENT.unpack_from(data, pos)
            name = data[pos + EVENT.size : pos + EVENT.size + size].rstrip(b"\0")
            pos += EVENT.size + size
            if mask & IN_Q_OVERFLOW:
                self.overflowed = True
            elif mask & IN_IGNORED:
                self.folders.pop(wd, None)
            elif wd in self.folders and name:
                out.append((os.fsdecode(os.path.join(self.folders[wd], name)), bool(mask & IN_ISDIR)))
        return out

    def close(self) -> None:
        os.close(self.fd)


def folders(roots: list[str], real_roots: list[str]) -> Iterator[str]:
    """Every folder below roots, links followed once and only while they stay inside them."""
    seen: set[tuple[int, int]] = set()
    for root in roots:
        for top, subdirs, _ in os.walk(root, followlinks=True):
            try:
                st = os.stat(top)
            except OSError:
                subdirs[:] = []
                continue
            if (st.st_dev, st.st_ino) in seen or not inside(top, real_roots):
                subdirs[:] = []
                continue
            seen.add((st.st_dev, st.st_ino))
            yield top


class Watcher:
    """The pending files and the loop that queues them once settled."""

    def __init__(self, settings: Settings, roots: list[str], state, queue_one: Callable[[str], None]):
        self.settings, self.state, self.queue_one = settings, state, queue_one
        self.roots = [os.path.abspath(r) for r in roots]  # the paths the one-shot walk gives
        self.real_roots = [os.path.realpath(r) for r in roots]
        self.pending: dict[str, tuple[int, int, float]] = {}  # path -> size, mtime_ns, since when so
        self.notify: Inotify | None = None

    def listen(self) -> None:
        self.notify = Inotify.open()
        if self.notify is not None:
            for folder in folders(self.roots, self.real_roots):
                if not self._watch(folder):
                    return

    def _watch(self, folder: str) -> bool:
        assert self.notify is not None
        try:
            self.notify.add(folder)
            return True
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                log.warning(
                    "inotify: the kernel allows no more watches (raise fs.inotify.max_user_watches); "
                    "walking the folders every %gs instead",
                    self.settings.queuer.rescan,
                )
                self.notify.close()
                self.notify = None
                return False
            log.warning("%s: cannot watch it (%s); a rescan will find its files", display_path(folder), exc.strerror)
            return True

    def consider(self, path: str, requeue: bool = False) -> None:
        """A file that may be new or changed: pending from now, unless the state has it as it is."""
        if Path(path).suffix.lower() not in queuer.WALKED:
            return
        try:
            st = os.stat(path)
        except OSError:  # gone again (a temporary file renamed away)
            self.pending.pop(path, None)
            return
        if not requeue and self.state.unchanged(path, st):
            return
        seen = self.pending.get(path)
        if seen is None or seen[:2] != (st.st_size, st.st_mtime_ns):
            self.pending[path] = (st.st_size, st.st_mtime_ns, time.monotonic())

    def rescan(self, requeue: bool = False) -> None:
        for path in walk(self.roots, lambda p, why: log.debug("%s: %s", display_path(p), why), None, queuer.WALKED):
            self.consider(path, requeue)
        if self.notify is not None:
            self.notify.overflowed = False

    def heard(self, events: list[tuple[str, bool]]) -> None:
        for path, is_folder in events:
            if not is_folder:
                self.consider(path)
                continue
            if not inside(path, self.real_roots):
                continue
            for folder in folders([path], self.real_roots):  # a new folder: watch it, take what is in it already
                if self.notify is None or not self._watch(folder):
                    break
            for found in walk([path], lambda p, why: None, None, queuer.WALKED):
                self.consider(found)

    def settled(self) -> int:
        """Queue every pending file whose size and mtime stayed put for [queuer] settle seconds."""
        now, done = time.monotonic(), 0
        for path, (size, mtime_ns, since) in list(self.pending.items()):
            try:
                st = os.stat(path)
            except OSError:
                del self.pending[path]
                continue
            if (st.st_size, st.st_mtime_ns) != (size, mtime_ns):
                self.pending[path] = (st.st_size, st.st_mtime_ns, now)
            elif now - since >= self.settings.queuer.settle:
                del self.pending[path]
                self.queue_one(path)
                done += 1
        if done:
            self.state.commit()
        return done

    def run(self, should_stop: Callable[[], bool], requeue: bool) -> None:
        self.listen()
        self.rescan(requeue)  # what landed while no queuer watched
        log.info(
            "watching %s (%s); %d file(s) to queue first",
            ", ".join(display_path(r) for r in self.roots),
            "inotify" if self.notify else f"a walk every {self.settings.queuer.rescan:g}s",
            len(self.pending),
        )
        next_walk = time.monotonic() + self.settings.queuer.rescan
        while not should_stop():
            if self.notify is not None:
                self.heard(self.notify.read(TICK))
                if self.notify is not None and self.notify.overflowed:
                    log.warning("inotify dropped events (too many at once); walking the folders again")
                    self.rescan()
            else:
                time.sleep(TICK)
                if time.monotonic() >= next_walk:
                    self.rescan()
                    next_walk = time.monotonic() + self.settings.queuer.rescan
            self.settled()
        if self.notify is not None:
            self.notify.close()


def run_watch(
    settings: Settings,
    roots: list[str],
    requeue: bool,
    state_path: str,
    should_stop: Callable[[], bool],
    allow_small_jobs: bool = False,
) -> dict[str, int]:
    """queuer.py --watch: queue what is new, then keep queuing what appears or changes, until stopped."""
    for r in roots:
        if not os.path.isdir(r):
            raise UsageError(f"{r}: not a folder; pass folders of photos, as in queuer.py --watch /srv/photos")
    keys = envelope.load_keys(settings.grid.key_file)
    if keys is None:
        log.warning("%s", envelope.UNSIGNED_WARNING)
    state = queuer.State(state_path)
    one = queuer.connect(settings, state, keys, requeue, should_stop, allow_small_jobs)
    counts = one.counts
    watcher = Watcher(settings, roots, state, lambda p: None)
    one.real_roots = watcher.real_roots

    def queue_one(path: str) -> None:
        before = counts["queued"]
        one.queue_file(path)
        if counts["queued"] > before:
            log.info("queued %s", display_path(path))

    watcher.queue_one = queue_one
    try:
        watcher.run(should_stop, requeue)
    finally:
        state.commit()
        one.queue.close()
    log.info("stopped watching: %s", " ".join(f"{k}={v}" for k, v in counts.items()))
    return counts
