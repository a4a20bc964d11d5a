"""A filter frozen mid-job (SIGSTOP) past its TTR, on the real beanstalkd.

The protocol promises that beanstalkd hands a job to another worker when its
TTR runs out. Debian 12's beanstalkd 1.12 often does not do so when the holder
stays connected but silent: the job stays reserved, time-left below zero,
timeouts 0, until the connection closes (docs/reliability.md, "A frozen
filter"). The collector's watcher (facegrid/stuck.py) puts a copy of such a job
back. These tests demand that the photo is handed out again or copied back
within TTR + 15 s, and that the frozen filter's late result, when it wakes,
leaves one row per photo. The fast tests drive the watcher and the probe
against a real server without a grid.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time

import greenstalk
import oddphotos
import pytest
from conftest import db_rows, run_script, start_script, stored_rows, wait_for

from facegrid import stuck
from facegrid.settings import Beanstalkd, Stuck

TTR = 3
PHOTOS = 3


def conf_of(server) -> Beanstalkd:
    return Beanstalkd(host=server.host, port=server.port)


def silent_holders(server, tube: str, n: int, ttr: int = 2) -> tuple[greenstalk.Client, list, list[int]]:
    """n jobs on tube, each reserved by a connection of its own that then says nothing."""
    owner = server.client(use=tube)
    ids = [owner.put(b"photo %d" % i, priority=70 + i, ttr=ttr) for i in range(n)]
    holders = [server.client(watch=tube) for _ in ids]
    for h in holders:
        h.reserve(timeout=1)
    return owner, holders, ids


@pytest.mark.slow
def test_the_watcher_puts_back_every_job_the_server_did_not_time_out(beanstalkd):
    owner, holders, ids = silent_holders(beanstalkd, "images", 8)
    watcher = stuck.Watcher(conf_of(beanstalkd), Stuck(grace=1, interval=0.2), ("images",)).connect()
    copies: list[stuck.StuckJob] = []
    deadline = time.monotonic() + 2 + 1 + 2  # TTR + grace + 2 s
    while time.monotonic() < deadline:
        copies += watcher.tick()
        time.sleep(0.05)
    states = {i: owner.stats_job(i) for i in ids}
    lost = {i for i, s in states.items() if s["state"] == "reserved"}
    assert all(s["state"] == "ready" and s["timeouts"] == 1 for i, s in states.items() if i not in lost), states
    assert {c.id for c in copies} == lost  # every job the server lost, and only those, copied once
    for c in copies:
        copy = owner.stats_job(c.copy)
        assert (copy["tube"], copy["state"], copy["ttr"]) == ("images", "ready", 2), copy
        assert copy["pri"] == states[c.id]["pri"] and owner.peek(c.copy).body == owner.peek(c.id).body
    for _ in range(10):  # later passes copy nothing twice
        assert watcher.run_pass(time.monotonic() + 60) == []
    # the copies, held by silent connections in turn: with beanstalkd.max_attempts = 1 none is copied again
    watcher.max_copies = 1
    more = [beanstalkd.client(watch="images") for _ in copies]
    for h in more:
        h.reserve(timeout=1)
    put_before = beanstalkd.tube("images")["total-jobs"]
    deadline = time.monotonic() + 2 + 1 + 2
    again = []
    while time.monotonic() < deadline:
        again += watcher.tick()
        time.sleep(0.05)
    assert beanstalkd.tube("images")["total-jobs"] == put_before and all(a.copy is None for a in again), again
    watcher.close()
    for h in holders + more:
        h.close()


@pytest.mark.slow
def test_the_watcher_leaves_alone_what_is_alive_or_not_its_tube(beanstalkd):
    owner, holders, ids = silent_holders(beanstalkd, "people", 4)  # not a watched tube
    busy = beanstalkd.client(use="images")
    busy.watch("images")
    busy.put(b"kept alive", ttr=2)
    busy.put(b"left ready", ttr=2)
    held = busy.reserve(timeout=1)
    watcher = stuck.Watcher(conf_of(beanstalkd), Stuck(grace=1, interval=0.2), ("images",)).connect()
    until = time.monotonic() + 6
    while time.monotonic() < until:
        busy.touch(held)  # a worker that is slow but alive
        assert watcher.tick() == []
        time.sleep(0.3)
    assert beanstalkd.tube("images")["total-jobs"] == 2  # no copy of anything
    assert watcher.commands < 80, watcher.commands  # a quiet server costs about one command a pass
    for h in holders:
        h.close()


@pytest.mark.slow
def test_the_watcher_finds_jobs_put_before_it_started_and_after_a_restart(beanstalkd):
    owner, holders, ids = silent_holders(beanstalkd, "images", 6)
    for _ in range(30):  # other tubes' jobs between: ids are shared by every tube
        owner.use("people")
        owner.delete(owner.put(b"x"))
    time.sleep(2 + 1.5)
    lost = {i for i in ids if owner.stats_job(i)["state"] == "reserved"}
    found = stuck.Watcher(conf_of(beanstalkd), Stuck(grace=1), ("images",), copy=False).connect().scan()
    assert {s.id for s in found} == lost and all(s.copy is None for s in found)
    assert beanstalkd.tube("images")["total-jobs"] == 6  # scan puts nothing back


@pytest.mark.slow
def test_status_check_probes_the_server_and_says_what_it_found(beanstalkd):
    proc = run_script("scripts/status", "--check", "--json", "--beanstalkd", beanstalkd.address, timeout=60)
    report = json.loads(proc.stdout)
    assert len(report["probe"]["trials"]) == 8 and report["stuck"] == []
    lost = sum(t["state"] == "reserved" for t in report["probe"]["trials"])
    assert report["lost"] == lost and report["loses_expiries"] == (lost > 0)
    assert proc.returncode == (1 if lost else 0), proc.stderr
    stats = beanstalkd.client().stats()
    held = sum(stats[f"current-jobs-{s}"] for s in ("ready", "reserved", "delayed", "buried"))
    assert held == 0, stats  # the probe's jobs are gone
    text = run_script("scripts/status", "--check", "--beanstalkd", beanstalkd.address, timeout=60)
    assert "probe jobs with a TTR of 2s" in text.stdout and text.returncode in (0, 1), text.stderr


@pytest.mark.slow
def test_status_check_lists_a_stuck_job_of_the_grid(beanstalkd):
    owner, holders, ids = silent_holders(beanstalkd, "images", 6)
    time.sleep(2 + 1.5)
    lost = [i for i in ids if owner.stats_job(i)["state"] == "reserved"]
    proc = run_script(
        "scripts/status", "--check", "--json", "--set", "stuck.grace=1", "--beanstalkd", beanstalkd.address
    )
    report = json.loads(proc.stdout)
    assert sorted(s["id"] for s in report["stuck"]) == lost
    assert proc.returncode == (1 if lost or report["lost"] else 0)


def frozen_job(server) -> int:
    """The id of the one image job reserved."""
    reserved = []
    with server.client() as c:
        for i in range(1, 50):
            try:
                s = c.stats_job(i)
            except greenstalk.NotFoundError:
                continue
            if s["tube"] == "images" and s["state"] == "reserved":
                reserved.append(i)
    assert len(reserved) == 1, reserved
    return reserved[0]


def handed_out_again(server, job_id: int) -> bool:
    """The server timed it out, or the watcher put a copy on the tube."""
    with server.client() as c:
        try:
            timed_out = c.stats_job(job_id)["timeouts"] >= 1
        except greenstalk.NotFoundError:
            timed_out = True
    return timed_out or server.tube("images")["total-jobs"] > PHOTOS


@pytest.mark.slow
@pytest.mark.chaos
def test_a_frozen_filter_is_handed_out_again_or_copied_back(beanstalkd, faces_dir, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(PHOTOS):
        oddphotos.unique_copy(faces_dir / "people/obama/obama.jpg", photos / f"{i}.jpg", 501 + i)
    addr = ["--beanstalkd", beanstalkd.address]
    ttr = ["--set", f"beanstalkd.ttr={TTR}"]  # the queuer's put sets the image job's TTR
    run_script("queuer.py", *addr, *ttr, "--state", tmp_path / "q.sqlite", photos, check=True)
    db = tmp_path / "faces.db"
    collector = start_script("collector.py", *addr, "--db", db)  # its watcher runs on the shipped [stuck] settings
    frozen = start_script("filter.py", *addr, "--workers", "1", *ttr, "--upsample", "3", start_new_session=True)
    other = None
    try:
        wait_for(lambda: beanstalkd.tube("images")["current-jobs-reserved"] == 1, 120, 0.02, "the job reserved")
        os.killpg(frozen.pid, signal.SIGSTOP)  # the whole filter, parent and worker: a host that froze
        stopped_at = time.monotonic()
        job_id = frozen_job(beanstalkd)
        other = start_script("filter.py", *addr, "--workers", "1", *ttr)
        wait_for(lambda: handed_out_again(beanstalkd, job_id), TTR + 15, 0.1, f"job {job_id} back within TTR + 15 s")
        back_after = time.monotonic() - stopped_at
        copied = beanstalkd.tube("images")["total-jobs"] > PHOTOS
        stored = lambda: stored_rows(db, "SELECT count(*) FROM images") == [(PHOTOS,)]  # noqa: E731
        wait_for(stored, 180, 0.3, "every photo stored while the filter is frozen")
        os.killpg(frozen.pid, signal.SIGCONT)  # it wakes, finishes its photo, and deletes its job (or finds it gone)
        wait_for(lambda: gone(beanstalkd, job_id), 180, 0.2, f"job {job_id} finished by the woken filter")
        wait_for(lambda: drained(beanstalkd), 120, 0.2, "both tubes drained")
        for proc in (frozen, other, collector):
            proc.send_signal(signal.SIGTERM)
        outs = {name: p.communicate(timeout=120) for name, p in (("frozen", frozen), ("other", other))}
        c_out, c_err = collector.communicate(timeout=120)
    finally:
        for proc in (frozen, other, collector):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(30)
    for name, (_, err) in outs.items():
        assert "Traceback" not in err, f"{name} filter:\n{err[-3000:]}"
    assert frozen.returncode == other.returncode == collector.returncode == 0, c_err[-2000:]
    assert "Traceback" not in c_err, c_err[-3000:]
    assert ("put back as job" in c_err) == copied, c_err[-2000:]
    n_stored = int(re.findall(r"(\d+) results stored", c_err)[-1])
    assert n_stored == PHOTOS + (1 if copied else 0), c_err[-2000:]  # a copy gives the frozen filter's late repeat
    assert db_rows(db, "SELECT count(*), min(status), max(status) FROM images") == [(PHOTOS, "ok", "ok")]
    assert db_rows(db, "SELECT count(*), count(DISTINCT image_id) FROM faces") == [(PHOTOS, PHOTOS)]
    how = "copied back" if copied else "timed out by the server"
    print(f"\nfrozen job {job_id}: {how} {back_after:.1f}s after the stop")


def gone(server, job_id: int) -> bool:
    with server.client() as c:
        try:
            c.stats_job(job_id)
            return False
        except greenstalk.NotFoundError:
            return True


def drained(server) -> bool:
    return all(
        not (server.tube(t)["current-jobs-ready"] or server.tube(t)["current-jobs-reserved"])
        for t in ("images", "people")
    )
