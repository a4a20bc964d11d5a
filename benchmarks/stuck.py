"""The stuck-job watcher's cost and promptness (facegrid/stuck.py) on a private beanstalkd.

A stand-in grid without dlib, so that only the queue is measured:
- a queuer thread keeps --ready image jobs on the tube (TTR 120 s, 20 KB bodies);
- --workers filter threads reserve a job, hold it --hold seconds, put a result
  on the people tube and delete the job;
- a collector thread deletes the results;
- every --freeze-every seconds, a frozen host: a connection puts a job with TTR
  --freeze-ttr, reserves it and goes silent for good;
- the watcher runs in a thread of its own on the shipped [stuck] settings, its
  tick() called every 50 ms (the collector calls it between reserves).

Reported: photos a second; the watcher's commands a second, next to what a scan
of every id from the oldest live image job to the newest, once a pass, would
send; frozen jobs the server timed out and frozen jobs the watcher copied back;
seconds past the TTR until the copy (median, max).

    .venv/bin/python -m benchmarks.stuck [--seconds 60] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import greenstalk
import localgrid

from facegrid import settings, stuck


def run(args: argparse.Namespace) -> dict:
    """The same stand-in grid twice, each on a fresh server: without the watcher, then with it."""
    out = {}
    for watch in (False, True):
        with tempfile.TemporaryDirectory() as tmp, localgrid.Server(Path(tmp) / "binlog") as server:
            figures = Bench(server, args, watch).run()
        out.update({f"{'on' if watch else 'off'}_{k}": v for k, v in figures.items()})
    out["server_cpu_ratio_on_off"] = round(out["on_server_cpu_ms_per_photo"] / out["off_server_cpu_ms_per_photo"], 2)
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Bench:
    def __init__(self, server: localgrid.Server, args: argparse.Namespace, watch: bool):
        self.server, self.args, self.watch = server, args, watch
        self.stop = threading.Event()
        self.done = 0
        self.frozen: dict[int, float] = {}  # job id -> when it was reserved
        self.copied: dict[int, float] = {}  # job id -> when the watcher copied it
        self.full_scan: list[int] = []  # per pass: ids a scan from the oldest live job would check

    def client(self, **kw) -> greenstalk.Client:
        return greenstalk.Client((self.server.host, self.server.port), encoding=None, **kw)

    def run(self) -> dict:
        a = self.args
        conf = settings.Beanstalkd(host=self.server.host, port=self.server.port)
        shipped = settings.load().stuck
        watcher = stuck.Watcher(conf, shipped, ("images",)).connect()
        threads = [threading.Thread(target=self.queuer, daemon=True)]
        threads += [threading.Thread(target=self.worker, daemon=True) for _ in range(a.workers)]
        threads += [threading.Thread(target=self.collector, daemon=True), threading.Thread(target=self.freezer)]
        for t in threads:
            t.start()
        assert self.server.proc is not None
        started, cpu0 = time.monotonic(), cpu_seconds(self.server.proc.pid)
        end = started + a.seconds
        passes = 0
        while time.monotonic() < end and not self.watch:
            time.sleep(0.05)
        while time.monotonic() < end:
            before = watcher.next_pass
            for s in watcher.tick():
                self.copied[s.id] = time.monotonic()
            if watcher.next_pass != before:
                passes += 1
                live = [j for _, j in watcher.due]
                self.full_scan.append(watcher.newest - min(live) + 1 if live else 0)
            time.sleep(0.05)
        elapsed = time.monotonic() - started
        cpu = cpu_seconds(self.server.proc.pid) - cpu0
        done = self.done
        self.stop.set()
        for t in threads:
            t.join(10)
        watcher.close()
        figures = self.figures(elapsed, watcher.commands, passes, shipped)
        figures["photos_per_s"] = round(done / elapsed, 1)
        figures["server_cpu_ms_per_photo"] = round(cpu * 1e3 / max(done, 1), 3)
        return figures

    def figures(self, elapsed: float, cmds: int, passes: int, shipped: settings.Stuck) -> dict:
        owner = self.client()
        timed_out = 0
        for job_id in self.frozen:
            try:
                timed_out += owner.stats_job(job_id)["timeouts"] >= 1
            except greenstalk.NotFoundError:
                timed_out += 1
        owner.close()
        if not self.watch:
            return {"seconds": round(elapsed, 1), "frozen": len(self.frozen), "frozen_timed_out_by_server": timed_out}
        late = [self.copied[j] - t - self.args.freeze_ttr for j, t in self.frozen.items() if j in self.copied]
        return {
            "seconds": round(elapsed, 1),
            "load_average_1min": round(os.getloadavg()[0], 2),
            "ready_kept": self.args.ready,
            "watcher_passes": passes,
            "watcher_commands_per_s": round(cmds / elapsed, 1),
            "full_scan_commands_per_s": round(sum(self.full_scan) / elapsed, 1),
            "frozen": len(self.frozen),
            "frozen_timed_out_by_server": timed_out,
            "frozen_copied_back": len(late),
            "copy_s_past_ttr_median": round(statistics.median(late), 1) if late else None,
            "copy_s_past_ttr_max": round(max(late), 1) if late else None,
            "grace_s": shipped.grace,
            "interval_s": shipped.interval,
        }

    # -- the stand-in grid ------------------------------------------------------------------
    def queuer(self) -> None:
        c = self.client(use="images")
        body = os.urandom(20_000)
        while not self.stop.is_set():
            ready = c.stats_tube("images")["current-jobs-ready"]
            for _ in range(self.args.ready - ready):
                c.put(body, ttr=120)
            time.sleep(0.2)

    def worker(self) -> None:
        c = self.client(use="people", watch="images")
        while not self.stop.is_set():
            try:
                job = c.reserve(timeout=1)
            except greenstalk.TimedOutError:
                continue
            time.sleep(self.args.hold)
            c.put(b"result", ttr=120)
            c.delete(job)
            self.done += 1

    def collector(self) -> None:
        c = self.client(watch="people")
        while not self.stop.is_set():
            try:
                c.delete(c.reserve(timeout=1))
            except greenstalk.TimedOutError:
                continue

    def freezer(self) -> None:
        a = self.args
        last = time.monotonic() + a.seconds - a.freeze_ttr - 10  # leave time for the last one's copy
        holders = []
        while not self.stop.wait(a.freeze_every) and time.monotonic() < last:
            c = self.client(use="images", watch="images")
            job_id = c.put(b"frozen", priority=0, ttr=a.freeze_ttr)
            job = c.reserve(timeout=5)
            if job.id == job_id:
                self.frozen[job_id] = time.monotonic()
            else:  # a worker was quicker: hand its job back and count nothing
                c.release(job, priority=2**16)
            holders.append(c)  # silent from here on, connection open: a frozen host
        self.stop.wait()
        for c in holders:
            c.close()


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.stuck", description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=60.0, help="length of the run (default 60)")
    p.add_argument("--ready", type=int, default=500, help="image jobs kept ready (beanstalkd.max_ready, 500)")
    p.add_argument("--workers", type=int, default=4, help="stand-in filter workers (default 4)")
    p.add_argument("--hold", type=float, default=0.02, help="seconds a worker holds each job (default 0.02)")
    p.add_argument("--freeze-every", type=float, default=4.0, help="seconds between frozen hosts (default 4)")
    p.add_argument("--freeze-ttr", type=int, default=5, help="TTR of a frozen host's job (default 5)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    figures = run(args)
    if args.json:
        print(json.dumps(figures))
    else:
        for k, v in figures.items():
            print(f"{k:<30}{v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
