"""bench.py --only live: a live grid's alert latency, and what the alert checks cost the collector.

Latency: a real beanstalkd, `facegrid watch add` with two photos of one labelled
person, then queuer.py --watch on an empty folder, filter.py --workers 2 and
collector.py, all idle. One at a time, a photo of the person is copied into the
folder (each a distinct file: the labelled photos in turn, each with a few bytes of
its own after the JPEG's end, which decoders ignore) and the time from the start of
the copy to its line in the alerts file is taken. It includes [queuer] settle (the
photo must be seen unchanged that long before it is queued). Median over PHOTOS.

Cost: Alerter.check, the collector's own call after each commit, on batches of
stored results with one face each, against WATCHES watched people of synthetic
profiles (faces drawn like dlib encodings: people about 0.9 apart), on a real
SQLite database; faces of strangers, so no alert is recorded (a hit costs one crop's
sharpness and one insert more, and hits are rare). Per stored face, for a batch of
one (an idle grid) and a full collector batch.

The machine may be shared: the load average is given beside the figures.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
FACES = Path(os.environ.get("FACEGRID_FACES", ROOT.parent / "shared" / "faces"))
PERSON = "obama"
TARGETS = ("obama.jpg", "obama2.jpg")
PHOTOS = 20
WATCHES = 1000
LATENCY_TARGET_S = 3.0
COST_TARGET_MS = 1.0


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def run(args) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="facegrid-live-", dir=getattr(args, "tmp", None)))
    try:
        rows = {"load average (1/5/15 min) at start": load()}
        rows.update(check_cost(tmp))
        rows.update(latency(tmp, 5 if getattr(args, "quick", False) else PHOTOS))
        rows["load average (1/5/15 min) at end"] = load()
        return rows
    finally:
        if not getattr(args, "keep", False):
            shutil.rmtree(tmp, ignore_errors=True)


# -- what the checks cost ---------------------------------------------------------------------
def synthetic_watches(rng, n: int, rows_each: int) -> list[dict]:
    out = []
    for i in range(n):
        centre = rng.normal(0, 0.055, 128)
        profile = (centre + rng.normal(0, 0.022, (rows_each, 128))).astype("<f4")
        out.append({"name": f"person {i}", "profile": profile.tobytes(), "targets": profile.tobytes()})
    return out


def check_cost(tmp: Path) -> dict:
    from facegrid import alerting, store
    from facegrid.envelope import Face, Result
    from facegrid.settings import Alerts

    rng = np.random.default_rng(19)
    rows: dict = {}
    for rows_each, mode in ((1, "mean"), (20, "min")):
        db = store.open_db(tmp / f"cost-{mode}.db")
        for w in synthetic_watches(rng, WATCHES, rows_each):
            store.save_watch(
                db,
                {
                    **w,
                    "source": "folder bench",
                    "person_id": None,
                    "mode": mode,
                    "tolerance": 0.5,
                    "target_ids": "[]",
                    "created_at": 0.0,
                    "refreshed_at": 0.0,
                },
            )
        alerter = alerting.Alerter(Alerts(file="", tube="", command=""), db)

        def results(n: int) -> list[Result]:
            out = []
            for _ in range(n):
                enc = rng.normal(0, 0.055, 128).astype(np.float32)  # a stranger
                face = Face((10, 60, 60, 10), enc, b"")
                out.append(Result(os.urandom(32).hex(), "p.jpg", "h", 1, 0.0, 0.0, "ok", faces=[face]))
            return out

        alerter.check(results(1))  # loads the watchlist (once per change of the watches)
        for batch in (1, 256):
            took = []
            for _ in range(200 if batch == 1 else 20):
                rs = results(batch)
                t0 = time.perf_counter()
                new = alerter.check(rs)
                took.append((time.perf_counter() - t0) / batch)
                assert new == []
            per_face = statistics.median(took) * 1e3
            what = f"alert check per stored face, {WATCHES:,} watches ({mode}, {rows_each} row(s)), batch {batch}"
            rows[what] = (f"{per_face:.3f} ms", f"<= {COST_TARGET_MS:g} ms", per_face <= COST_TARGET_MS)
        db.conn.close()
    return rows


# -- from a copied photo to its alert -------------------------------------------------------
def photos() -> list[Path]:
    folder = FACES / "people" / PERSON
    chosen = ["obama3.jpg", "obama_240p.jpg", "obama_480p.jpg", "obama_720p.jpg", "obama_1080p.jpg"]
    return [folder / name for name in chosen if (folder / name).exists()]


def latency(tmp: Path, count: int) -> dict:
    from localgrid import Server, script

    target, incoming = tmp / "target", tmp / "incoming"
    target.mkdir()
    incoming.mkdir()
    for name in TARGETS:
        shutil.copy(FACES / "people" / PERSON / name, target)
    db, alerts, logf = tmp / "live.db", tmp / "alerts.jsonl", tmp / "grid.log"
    with Server(tmp / "binlog") as server, open(logf, "ab") as err:
        common = ["--beanstalkd", server.address]
        watch = [sys.executable, "-m", "facegrid", "watch", "add", PERSON, str(target), "--db", str(db), *common]
        subprocess.run(watch, check=True, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err)
        quiet: dict[str, Any] = {"stdout": subprocess.DEVNULL, "stderr": err}
        procs = [
            subprocess.Popen(script("collector.py", "--db", db, "--set", f"alerts.file={alerts}", *common), **quiet),
            subprocess.Popen(script("filter.py", "--workers", 2, *common), **quiet),
            subprocess.Popen(script("queuer.py", "--watch", incoming, "--state", tmp / "q.sqlite", *common), **quiet),
        ]
        try:
            took = measure(procs, incoming, alerts, logf, count)
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(60)
    med = statistics.median(took)
    return {
        f"copied photo -> its alert, median of {len(took)} (2 filter workers)": (
            f"{med:.2f} s",
            f"<= {LATENCY_TARGET_S:g} s",
            med <= LATENCY_TARGET_S,
        ),
        "copied photo -> its alert, slowest": f"{max(took):.2f} s",
        "copied photo -> its alert, fastest": f"{min(took):.2f} s",
    }


def measure(procs, incoming: Path, alerts: Path, logf: Path, count: int) -> list[float]:
    ready = time.monotonic() + 120
    while "filter worker ready" not in logf.read_text(errors="replace") or "watching" not in logf.read_text(
        errors="replace"
    ):
        if time.monotonic() > ready or any(p.poll() is not None for p in procs):
            raise RuntimeError(f"the live grid did not start; see {logf}")
        time.sleep(0.1)
    time.sleep(2)  # both workers load their models
    sources, took = photos(), []
    for i in range(count):
        src = sources[i % len(sources)]
        name = f"{i:02d}-{src.name}"
        t0 = time.perf_counter()
        (incoming / name).write_bytes(src.read_bytes() + f"facegrid-bench-{i}".encode())  # a file of its own
        while name not in (alerts.read_text() if alerts.exists() else ""):
            if time.perf_counter() - t0 > 60:
                raise RuntimeError(f"no alert for {name} within 60 s; see {logf}")
            time.sleep(0.01)
        took.append(time.perf_counter() - t0)
        log(f"live: {name} alerted after {took[-1]:.2f} s")
        time.sleep(0.5)
    return took
