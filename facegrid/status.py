"""scripts/status: the grid at a glance.

Per tube: ready, reserved, delayed, buried and the connections watching it (on
the images tube these are filter workers, on the people tube collectors). Rates
come from beanstalkd's cumulative counters, sampled twice or more:
  in  = growth of the tube's total-jobs (puts)  per second
  out = growth of the tube's cmd-delete (jobs finished) per second
over the last minute of samples. ``--once`` therefore watches for --sample
seconds (5 by default) before it prints; ``--watch`` keeps a minute of samples
in memory. No state file: a counter that goes down means beanstalkd restarted,
and the history starts again. The ETA is the time to drain what is queued now
at the current out-rates; the queuer holds back photos beyond
beanstalkd.max_ready, so its own progress bar has the ETA for a whole folder.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from collections import deque
from pathlib import Path

from . import cli, store, stuck
from .beanstalk import Queue
from .errors import StoreError, UsageError
from .settings import Settings

WINDOW = 60.0  # seconds of samples the rates are computed over
FIELDS = ("ready", "reserved", "delayed", "buried", "watching")


@dataclasses.dataclass
class Sample:
    at: float
    tubes: dict[str, dict[str, int]]  # tube -> FIELDS + total (puts) + deleted


def take_sample(queue: Queue, tubes: tuple[str, ...]) -> Sample:
    out = {}
    for tube in tubes:
        s = queue.stats_tube(tube)
        out[tube] = {
            "ready": s["current-jobs-ready"],
            "reserved": s["current-jobs-reserved"],
            "delayed": s["current-jobs-delayed"],
            "buried": s["current-jobs-buried"],
            "watching": s["current-watching"],
            "total": s["total-jobs"],
            "deleted": s.get("cmd-delete", 0),
        }
    return Sample(time.monotonic(), out)


class History:
    """The samples of the last WINDOW seconds; cleared when a counter goes back."""

    def __init__(self, window: float = WINDOW):
        self.window = window
        self.samples: deque[Sample] = deque()

    def add(self, sample: Sample) -> None:
        if self.samples and _went_back(self.samples[-1], sample):
            self.samples.clear()  # beanstalkd restarted: old counters mean nothing now
        self.samples.append(sample)
        while len(self.samples) > 2 and sample.at - self.samples[0].at > self.window:
            self.samples.popleft()

    def rates(self, tube: str) -> tuple[float | None, float | None]:
        """(in, out) jobs per second, or None before two samples exist."""
        if len(self.samples) < 2:
            return None, None
        first, last = self.samples[0], self.samples[-1]
        dt = max(last.at - first.at, 1e-6)
        a, b = first.tubes[tube], last.tubes[tube]
        return (b["total"] - a["total"]) / dt, (b["deleted"] - a["deleted"]) / dt


def _went_back(old: Sample, new: Sample) -> bool:
    return any(
        new.tubes[t]["total"] < old.tubes[t]["total"] or new.tubes[t]["deleted"] < old.tubes[t]["deleted"]
        for t in new.tubes
        if t in old.tubes
    )


def eta_seconds(snapshot: dict, images: str, people: str) -> float | None:
    """Seconds until both tubes are drained at the current out-rates (0: nothing queued).

    The filters are the slow stage: the photos left on the images tube at its
    out-rate. The collector's backlog counts too, once it has a rate (it stores
    in batches, so a short window may see none); None when a stage with work has
    finished nothing in the window."""
    t = snapshot["tubes"]
    img_left = t[images]["ready"] + t[images]["reserved"] + t[images]["delayed"]
    ppl_left = t[people]["ready"] + t[people]["reserved"] + t[people]["delayed"]
    img_rate, ppl_rate = t[images]["out_per_s"], t[people]["out_per_s"]
    if img_left and not img_rate:
        return None
    if ppl_left and not ppl_rate and not img_left:
        return None
    waits = [img_left / img_rate if img_left else 0.0]
    if ppl_left and ppl_rate:
        waits.append((ppl_left + img_left) / ppl_rate)
    return max(waits)


def db_counts(db_path: str) -> dict | None:
    if not Path(db_path).exists():
        return None
    try:
        db = store.open_readonly(db_path)  # looking changes nothing, and never makes tables
    except (StoreError, UsageError):
        return None
    try:
        return store.counts(db)
    finally:
        db.conn.close()


def snapshot(settings: Settings, history: History, db_path: str, max_job_size: int | None = None) -> dict:
    b = settings.beanstalkd
    last = history.samples[-1]
    tubes: dict[str, dict[str, float | None]] = {}
    for tube in (b.images_tube, b.people_tube):
        rin, rout = history.rates(tube)
        tubes[tube] = {k: last.tubes[tube][k] for k in FIELDS}
        tubes[tube].update(in_per_s=_round(rin), out_per_s=_round(rout))
    span = history.samples[-1].at - history.samples[0].at
    snap = {
        "beanstalkd": f"{b.host}:{b.port}",
        "max_job_size": max_job_size,
        "time": time.time(),
        "rate_window_s": round(span, 1),
        "tubes": tubes,
        "database": db_path,
        "db": db_counts(db_path),
    }
    snap["eta_s"] = _round(eta_seconds(snap, b.images_tube, b.people_tube))
    return snap


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 2)


def fmt_duration(s: float | None) -> str:
    if s is None:
        return "unknown (nothing is being finished)"
    s = int(round(s))
    if s < 60:
        return f"{s}s"
    h, rem = divmod(s, 3600)
    return f"{h}h{rem // 60:02d}m" if h else f"{rem // 60}m{rem % 60:02d}s"


def fmt_rate(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def render(snap: dict) -> str:
    lines = [
        f"facegrid status  beanstalkd {snap['beanstalkd']}  "
        f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(snap['time']))}",
        f"max-job-size {snap['max_job_size']} bytes" if snap.get("max_job_size") else "",
        "",
        f"{'tube':<12}{'ready':>8}{'reserved':>10}{'delayed':>9}{'buried':>8}{'watching':>10}{'in/s':>8}{'out/s':>8}",
    ]
    for name, t in snap["tubes"].items():
        lines.append(
            f"{name:<12}{t['ready']:>8}{t['reserved']:>10}{t['delayed']:>9}{t['buried']:>8}"
            f"{t['watching']:>10}{fmt_rate(t['in_per_s']):>8}{fmt_rate(t['out_per_s']):>8}"
        )
    lines.append(
        f"rates over the last {snap['rate_window_s']:.0f}s; watching = filter workers (images), collectors (people)"
    )
    c = snap["db"]
    if c is None:
        lines.append(f"database {snap['database']}: not there yet (the collector creates it)")
    else:
        lines.append(
            f"database {snap['database']}: {c['images'] - c.get('frames', 0)} photos, "
            + (f"{c['videos']} videos ({c['frames']} frames), " if c.get("videos") else "")
            + f"{c['faces']} faces; "
            f"ok {c.get('ok', 0)}, no_faces {c.get('no_faces', 0)}, errors {c.get('error', 0)}"
        )
    lines.append(f"ETA to drain the queued photos: {fmt_duration(snap['eta_s'])}")
    buried = sum(t["buried"] for t in snap["tubes"].values())
    if buried:
        lines.append(f"{buried} buried job(s): scripts/buried list")
    return "\n".join(lines)


def prometheus(snap: dict) -> str:
    """The snapshot in the Prometheus text format (node_exporter's textfile collector reads it)."""
    out: list[str] = []

    def metric(name: str, kind: str, help_text: str, samples: list[tuple[dict[str, str], float | None]]) -> None:
        rows = [(labels, v) for labels, v in samples if v is not None]
        if not rows:
            return
        out.append(f"# HELP facegrid_{name} {help_text}")
        out.append(f"# TYPE facegrid_{name} {kind}")
        for labels, v in rows:
            text = ",".join(f'{k}="{_label(val)}"' for k, val in labels.items())
            value = str(v) if isinstance(v, int) else repr(float(v))  # exact: no rounding of large counts
            out.append(f"facegrid_{name}{{{text}}} {value}" if text else f"facegrid_{name} {value}")

    tubes = snap["tubes"]
    for field in FIELDS:
        what = "connections watching the tube" if field == "watching" else f"{field} jobs on the tube"
        metric(f"tube_{field}", "gauge", f"beanstalkd: {what}", [({"tube": t}, v[field]) for t, v in tubes.items()])
    for key, what in (("in_per_s", "put on"), ("out_per_s", "finished (deleted) from")):
        rate = f"tube_{key.replace('_per_s', '')}_jobs_per_second"
        help_text = f"jobs per second {what} the tube over the last {snap['rate_window_s']:g} s"
        metric(rate, "gauge", help_text, [({"tube": t}, v[key]) for t, v in tubes.items()])
    metric("max_job_size_bytes", "gauge", "beanstalkd's max-job-size", [({}, snap.get("max_job_size"))])
    metric("eta_seconds", "gauge", "seconds until the queued photos are drained", [({}, snap["eta_s"])])
    c = snap["db"]
    if c is not None:
        db = {"database": snap["database"]}
        metric("db_images", "gauge", "pictures stored in the database (photos and video frames)", [(db, c["images"])])
        metric("db_videos", "gauge", "videos stored in the database", [(db, c.get("videos"))])
        metric("db_frames", "gauge", "sampled video frames stored in the database", [(db, c.get("frames"))])
        metric("db_faces", "gauge", "faces stored in the database", [(db, c["faces"])])
        statuses = [({**db, "status": s}, c.get(s, 0)) for s in ("ok", "no_faces", "error")]
        metric("db_images_by_status", "gauge", "stored pictures (photos and video frames) by status", statuses)
    metric("status_time_seconds", "gauge", "when these figures were taken (Unix time)", [({}, snap["time"])])
    return "\n".join(out) + "\n"


def _label(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def show(snap: dict, as_json: bool, clear: bool = False, fmt: str = "table") -> None:
    if fmt == "prometheus":
        sys.stdout.write(prometheus(snap))
        sys.stdout.flush()
        return
    text = json.dumps(snap, indent=2) if as_json else render(snap)
    if clear:
        text = "\x1b[H\x1b[2J" + text
    print(text, flush=True)


def run(
    settings: Settings,
    db_path: str,
    mode: str,
    sample: float,
    interval: float,
    as_json: bool,
    fmt: str = "table",
) -> int:
    """mode 'once': sample for `sample` seconds, print, exit; 'watch': refresh every `interval`.

    fmt "prometheus" prints the Prometheus text format instead of a table or JSON."""
    b = settings.beanstalkd
    queue = Queue(b).connect()
    max_job = queue.max_job_size()
    tubes = (b.images_tube, b.people_tube)
    history = History()
    history.add(take_sample(queue, tubes))
    try:
        if mode == "once":
            if sample > 0:
                time.sleep(sample)
                history.add(take_sample(queue, tubes))
            show(snapshot(settings, history, db_path, max_job), as_json, fmt=fmt)
            return 0
        clear = sys.stdout.isatty() and not as_json and os.environ.get("TERM") != "dumb"
        while True:
            show(snapshot(settings, history, db_path, max_job), as_json, clear, fmt)
            time.sleep(interval)
            history.add(take_sample(queue, tubes))
    except KeyboardInterrupt:
        return 0
    finally:
        queue.close()


# -- the command line: python -m facegrid.status (scripts/status) ----------------------------
EPILOG = """\
examples:
  scripts/status                              sample for 5 s, print once
  scripts/status --watch                      refresh every 2 s until Ctrl-C
  scripts/status --json --sample 10           for scripts: one JSON object
  scripts/status --problems --db faces.db     photos that failed or showed no face, and why (--json too)
  scripts/status --check                      does this beanstalkd time out jobs? any stuck?
  scripts/status --beanstalkd 10.0.0.5:11300 --db /srv/facegrid/faces.db
  scripts/status --prometheus --db /srv/facegrid/faces.db > /var/lib/node_exporter/facegrid.prom.$$ \\
    && mv /var/lib/node_exporter/facegrid.prom.$$ /var/lib/node_exporter/facegrid.prom
                                              for node_exporter's textfile collector (cron)

in/s is the rate jobs are put on a tube, out/s the rate they are finished
(deleted), over the last minute of samples; watching counts the connections
that watch a tube (filter workers on images, collectors on people).
--check puts probe jobs with a 2 s TTR on a private tube, each reserved by a
connection that then goes silent, and sees whether they are back after 4 s
(about 5 s in all); it also lists jobs of the grid's tubes still reserved past
their TTR. It exits 1 when the server loses such expiries (docs/reliability.md).
exit codes: 0 ok, 1 --check found lost TTR expiries or stuck jobs,
  2 usage or settings error, 3 beanstalkd unreachable
"""


def main(argv=None) -> int:
    p = cli.parser("status", "Show queues, rates, workers, database counts and an ETA.", EPILOG)
    p.add_argument("--db", metavar="PATH", help="SQLite database ([collector] database)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--once", action="store_true", help="print once and exit (the default)")
    mode.add_argument("--watch", action="store_true", help="refresh in place until Ctrl-C")
    mode.add_argument("--check", action="store_true", help="probe the server's TTR handling, list stuck jobs")
    p.add_argument(
        "--sample",
        type=float,
        default=5.0,
        metavar="S",
        help="with --once: seconds of sampling for the rates (0: no rates; default 5)",
    )
    p.add_argument("--interval", type=float, default=2.0, metavar="S", help="with --watch: seconds between refreshes")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print JSON instead of a table")
    out.add_argument(
        "--prometheus",
        action="store_true",
        help="print the same figures in the Prometheus text format (node_exporter's textfile collector)",
    )
    p.add_argument(
        "--problems",
        action="store_true",
        help="list the photos that failed or showed no face, with the reason (from --db only; with --json)",
    )
    args = p.parse_args(argv)
    if args.problems:
        from . import problems

        if args.watch or args.prometheus:
            p.error("--problems goes with --db and --json only")
        cli.setup_logging(args)
        return problems.show(cli.load_settings(args, {"collector.database": args.db}).collector.database, args.json)
    if args.sample < 0 or args.interval <= 0:
        p.error("--sample must be 0 or more and --interval more than 0 seconds")
    cli.setup_logging(args)
    settings = cli.load_settings(args, {"collector.database": args.db})
    if args.check:
        return stuck.check(settings, args.json)
    return run(
        settings,
        settings.collector.database,
        "watch" if args.watch else "once",
        args.sample,
        args.interval,
        args.json,
        "prometheus" if args.prometheus else "table",
    )


if __name__ == "__main__":
    sys.exit(cli.run(main))
