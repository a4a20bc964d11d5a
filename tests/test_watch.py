"""Watchlists, alerts and queuer.py --watch, through the real scripts, beanstalkd and SQLite."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, db_rows, run_script, start_script, wait_for

from facegrid import alerting, queuer, store
from facegrid import settings as settings_mod

OBAMA = ("people/obama/obama.jpg", "people/obama/obama2.jpg")  # the watch's target photos
NEW_OBAMA = "people/obama/obama3.jpg"  # a new photo of him
STRANGER = "people/biden/biden.jpg"


def facegrid(*args, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "facegrid", *map(str, args)], capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def tube_bodies(server, tube: str = "alerts") -> list[dict]:
    """Every ready job of the tube, reserved and deleted."""
    import greenstalk

    out: list[dict] = []
    with server.client(watch=tube) as c:
        while True:
            try:
                job = c.reserve(timeout=0)
            except greenstalk.TimedOutError:
                return out
            out.append(json.loads(job.body))
            c.delete(job)


def stored_at(db: Path, name: str) -> list[float]:
    return (
        [r[0] for r in db_rows(db, "SELECT stored_at FROM images WHERE path LIKE ?", [f"%{name}"])]
        if db.exists()
        else []
    )


def copy_slowly(src: Path, dst: Path, pause: float) -> None:
    """Half the bytes, a pause, then the rest: a photo still being copied in."""
    data = src.read_bytes()
    with open(dst, "wb") as f:
        f.write(data[: len(data) // 2])
        f.flush()
        time.sleep(pause)
        f.write(data[len(data) // 2 :])


@pytest.mark.slow
def test_a_watched_person_alerts_once_a_stranger_never(beanstalkd, faces_dir, tmp_path):
    target, incoming = tmp_path / "target", tmp_path / "incoming"
    target.mkdir()
    incoming.mkdir()
    for rel in OBAMA:
        shutil.copy(faces_dir / rel, target)
    db, alerts, hooked = tmp_path / "faces.db", tmp_path / "alerts.jsonl", tmp_path / "hook.jsonl"
    hook = tmp_path / "hook.py"
    hook.write_text("import sys\nopen(sys.argv[1], 'a').write(sys.stdin.read() + '\\n')\n")
    addr = ["--beanstalkd", beanstalkd.address]
    added = facegrid("watch", "add", "obama", target, "--db", db)
    assert added.returncode == 0, added.stderr
    assert "watching obama" in added.stderr
    common = [*addr, "--set", "queuer.settle=2"]
    sets = ["--set", f"alerts.file={alerts}", "--set", f"alerts.command={sys.executable} {hook} {hooked}"]
    queuer_log = tmp_path / "queuer.log"
    with open(queuer_log, "w") as err:
        procs = [
            start_script("collector.py", *addr, "--db", db, *sets),
            start_script("filter.py", *addr, "--workers", "1"),
            start_script("queuer.py", *common, "--watch", incoming, "--state", tmp_path / "q.sqlite", stderr=err),
        ]
    try:
        wait_for(lambda: "watching" in queuer_log.read_text(), timeout=60, what="the queuer watching")
        shutil.copy(faces_dir / NEW_OBAMA, incoming)
        copy_slowly(faces_dir / STRANGER, incoming / "biden.jpg", pause=0.5)
        wait_for(lambda: lines(alerts), timeout=120, what="the alert of the watched person")
        wait_for(lambda: stored_at(db, "biden.jpg"), timeout=120, what="the stranger's photo stored")
        time.sleep(1)  # anything the stranger would alert comes within this
        found = lines(alerts)
        assert len(found) == 1, found
        (alert,) = found
        assert alert["name"] == "obama" and alert["path"] == str(incoming / "obama3.jpg")
        assert alert["confidence"] == "strong" and alert["distance"] < 0.5 and alert["person"] is None
        assert {"photo", "host", "box", "stored_at"} <= alert.keys()
        assert tube_bodies(beanstalkd) == [alert]
        wait_for(lambda: lines(hooked), timeout=30, what="[alerts] command")
        assert lines(hooked) == [alert]
        # the photo copied in two halves was queued once, whole
        rows = db_rows(db, "SELECT size FROM images WHERE path = ?", [str(incoming / "biden.jpg")])
        assert rows == [((faces_dir / STRANGER).stat().st_size,)]
        assert db_rows(db, "SELECT count(*) FROM images")[0][0] == 2

        # the same photos queued again are stored again, and alert nothing
        before = stored_at(db, "obama3.jpg")
        run_script("queuer.py", *addr, "--requeue", "--state", tmp_path / "again.sqlite", incoming, check=True)
        wait_for(lambda: stored_at(db, "obama3.jpg") != before, timeout=120, what="the photo stored again")
        time.sleep(1)
        assert len(lines(alerts)) == 1
        assert tube_bodies(beanstalkd) == []
        assert db_rows(db, "SELECT count(*), count(sent_at) FROM alerts") == [(1, 1)]
    finally:
        for p in reversed(procs):
            p.send_signal(signal.SIGTERM)
        codes = [p.wait(60) for p in reversed(procs)]
    queuer_err = queuer_log.read_text()
    assert codes[0] == 0, queuer_err  # the watching queuer stops cleanly on SIGTERM
    assert codes == [0, 0, 0]
    assert "inotify" in queuer_err and "Traceback" not in queuer_err


@pytest.mark.slow
def test_unsent_alerts_go_out_at_start_and_a_failing_command_is_only_logged(beanstalkd, tmp_path):
    db, alerts = tmp_path / "faces.db", tmp_path / "alerts.jsonl"
    conn = store.open_db(db)
    bodies = [
        json.dumps({"name": f"n{i}", "path": f"p{i}.jpg", "host": "h", "confidence": "strong", "distance": 0.3})
        for i in range(2)
    ]
    assert len(store.record_alerts(conn, [(1, f"s{i}", f"s{i}", 0, b, 1.0) for i, b in enumerate(bodies)])) == 2
    assert store.record_alerts(conn, [(1, "s0", "s0", 0, bodies[0], 2.0)]) == []  # keyed by watch and photo
    conn.conn.close()
    failing = f"{sys.executable} -c 'import sys; sys.exit(3)'"
    proc = run_script(
        "collector.py",
        "--beanstalkd",
        beanstalkd.address,
        "--db",
        db,
        "--burst",
        "--set",
        f"alerts.file={alerts}",
        "--set",
        f"alerts.command={failing}",
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert [a["name"] for a in lines(alerts)] == ["n0", "n1"]
    assert proc.stderr.count("exited 3") == 2 and "Traceback" not in proc.stderr
    assert [b["name"] for b in tube_bodies(beanstalkd)] == ["n0", "n1"]
    assert db_rows(db, "SELECT count(sent_at) FROM alerts") == [(2,)]


@pytest.mark.slow
def test_watch_add_list_refresh_remove(faces_dir, tmp_path):
    target = tmp_path / "target"
    target.mkdir()
    for rel in OBAMA:
        shutil.copy(faces_dir / rel, target)
    db = tmp_path / "faces.db"
    assert facegrid("watch", "add", "obama", target, "--db", db).returncode == 0
    again = facegrid("watch", "add", "obama", target, "--db", db)
    assert again.returncode == 2 and "a watch named 'obama' exists" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1
    listed = facegrid("watch", "list", "--json", "--db", db)
    (row,) = json.loads(listed.stdout)
    assert (row["name"], row["photos"], row["tolerance"], row["alerts"]) == ("obama", 2, 0.5, 0)
    assert facegrid("watch", "refresh", "--db", db).returncode == 0
    no_registry = facegrid("watch", "add", "x", "--person", "1", "--db", db)
    assert no_registry.returncode == 2 and "people registry" in no_registry.stderr
    assert "Traceback" not in no_registry.stderr
    both = facegrid("watch", "add", "x", target, "--person", "1", "--db", db)
    assert both.returncode == 2 and "exactly one of TARGET_DIR or --person" in both.stderr
    assert facegrid("watch", "remove", "obama", "--db", db).returncode == 0
    assert facegrid("watch", "remove", "obama", "--db", db).returncode == 1
    assert facegrid("watch", "list", "--db", db).returncode == 1
    assert facegrid("watch", "--help").returncode == 0
    missing = facegrid("watch", "list", "--db", tmp_path / "none.db")
    assert missing.returncode == 2 and "none.db does not exist" in missing.stderr
    assert not (tmp_path / "none.db").exists()


def test_watchlist_hits_are_the_exact_distances_within_each_tolerance():
    rng = np.random.default_rng(7)
    sizes, tol = [1, 3, 1, 5], [0.5, 0.45, 0.3, 0.6]
    rows = []
    for i, (n, t) in enumerate(zip(sizes, tol, strict=True)):
        profile = rng.normal(0, 0.09, (n, alerting.DIM)).astype("<f4")
        rows.append({"id": i + 1, "profile": profile.tobytes(), "tolerance": t, "target_ids": "[]"})
    wl = alerting.Watchlist(rows)
    x = np.concatenate([rng.normal(0, 0.09, (200, alerting.DIM)), alerting.vectors(rows[1]["profile"])[:1] + 0.02])
    x = x.astype(np.float32)
    want = set()
    for w, r in enumerate(rows):
        d = np.sqrt(((x[:, None, :] - alerting.vectors(r["profile"])[None]) ** 2).sum(-1)).min(1)
        want |= {(i, w) for i in np.flatnonzero(d <= tol[w])}
    got = wl.hits(x)
    assert {(i, w) for i, w, _ in got} == want and (200, 1) in want
    for i, w, d in got:
        assert abs(d - np.linalg.norm(alerting.vectors(rows[w]["profile"]) - x[i], axis=1).min()) < 1e-5
    few = x[[3, 200]]  # a small batch takes the row-by-row products
    assert {(int(j), w) for j, w, _ in wl.hits(few)} == {(j, w) for i, w in want for j in (0, 1) if [3, 200][j] == i}
    assert alerting.Watchlist([]).hits(x) == []


def test_a_schema_3_database_gains_the_watch_tables(tmp_path):
    path = tmp_path / "old.db"
    db = store.open_db(path)
    db.execute("DROP TABLE watches")
    db.execute("DROP TABLE alerts")
    db.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")
    db.conn.close()
    db = store.open_db(path)
    assert {"watches", "alerts"} <= set(db.table_names())
    assert store.get_meta(db, "schema_version") == str(store.SCHEMA_VERSION) == "5"
    assert store.watches(db) == [] and store.unsent_alerts(db) == []


def test_rescans_queue_a_file_only_once_its_size_has_settled(tmp_path):
    """The loop without inotify: a file still growing waits; once settled it is queued once."""
    folder = tmp_path / "in"
    folder.mkdir()
    settings = settings_mod.load(None, {"queuer.settle": "0.5"})
    state = queuer.State(str(tmp_path / "q.sqlite"))
    queued: list[str] = []

    def queue_one(path: str) -> None:
        queued.append(path)
        state.record(path, os.stat(path), "sha-" + Path(path).name)

    w = alerting_free_watcher(settings, folder, state, queue_one)
    photo = folder / "a.jpg"
    photo.write_bytes(b"x" * 1000)
    w.rescan()
    assert w.settled() == 0  # seen just now
    time.sleep(0.3)
    with open(photo, "ab") as f:
        f.write(b"y" * 1000)  # still being written
    w.rescan()
    assert w.settled() == 0
    time.sleep(0.6)
    assert w.settled() == 1 and queued == [str(photo)]
    w.rescan()
    time.sleep(0.6)
    assert w.settled() == 0 and queued == [str(photo)]  # unchanged since it was queued
    (folder / "notes.txt").write_text("not a photo")
    w.rescan()
    assert not w.pending


def alerting_free_watcher(settings, folder: Path, state, queue_one):
    from facegrid.folder_watch import Watcher

    return Watcher(settings, [str(folder)], state, queue_one)
