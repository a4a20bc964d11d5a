"""scripts/status against a real beanstalkd and a real database."""

from __future__ import annotations

import json
import signal
import threading
import time

import pytest
from conftest import ROOT, db_rows, run_script, start_script, wait_for

from facegrid import status


def status_json(address, *extra):
    proc = run_script("scripts/status", "--beanstalkd", address, "--json", *extra, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_empty_grid(beanstalkd, tmp_path):
    snap = status_json(beanstalkd.address, "--sample", "0", "--db", tmp_path / "none.db")
    assert snap["tubes"]["images"] == {
        "ready": 0,
        "reserved": 0,
        "delayed": 0,
        "buried": 0,
        "watching": 0,
        "in_per_s": None,
        "out_per_s": None,
    }
    assert snap["db"] is None and snap["eta_s"] == 0.0


def test_counts_states_and_watchers(beanstalkd, tmp_path):
    with beanstalkd.client(use="images", watch="images") as c:
        for i in range(6):
            c.put(b"job %d" % i)
        c.put(b"later", delay=300)
        c.bury(c.reserve(timeout=5))
        held = c.reserve(timeout=5)
        with beanstalkd.client(watch="people"):
            snap = status_json(beanstalkd.address, "--sample", "0", "--db", tmp_path / "none.db")
        c.release(held)
    images = snap["tubes"]["images"]
    assert (images["ready"], images["reserved"], images["delayed"], images["buried"]) == (4, 1, 1, 1)
    assert images["watching"] == 1 and snap["tubes"]["people"]["watching"] == 1
    assert snap["eta_s"] is None  # jobs are queued but nothing has been finished yet


@pytest.mark.slow
def test_rates_and_eta_while_jobs_flow(beanstalkd, tmp_path):
    stop = threading.Event()

    def traffic():  # a producer and a consumer, so jobs go in and out during the sampling
        with beanstalkd.client(use="images", watch="images") as c:
            for _i in range(20):
                c.put(b"backlog")
            while not stop.is_set():
                c.put(b"x")
                c.delete(c.reserve(timeout=5))
                time.sleep(0.02)

    t = threading.Thread(target=traffic)
    t.start()
    try:
        wait_for(lambda: beanstalkd.tube("images")["total-jobs"] > 20, 30, what="traffic")
        snap = status_json(beanstalkd.address, "--sample", "2", "--db", tmp_path / "none.db")
    finally:
        stop.set()
        t.join()
    images = snap["tubes"]["images"]
    assert images["in_per_s"] > 0 and images["out_per_s"] > 0
    assert images["ready"] >= 19
    assert snap["eta_s"] is not None and snap["eta_s"] > 0


@pytest.mark.slow
def test_prometheus_format_parses_and_matches_json(beanstalkd, tmp_path):
    from prometheus_client.parser import text_string_to_metric_families

    from facegrid import store

    db = tmp_path / "faces.db"
    store.open_db(db).conn.close()  # an empty database with the schema
    with beanstalkd.client(use="images", watch="images") as c:
        for i in range(3):
            c.put(b"job %d" % i)
        c.bury(c.reserve(timeout=5))
        held = c.reserve(timeout=5)
        args = ("--beanstalkd", beanstalkd.address, "--sample", "0", "--db", db)
        proc = run_script("scripts/status", *args, "--prometheus", timeout=120)
        snap = status_json(*args[1:])
        c.release(held)
    assert proc.returncode == 0, proc.stderr
    samples = {}
    for family in text_string_to_metric_families(proc.stdout):
        assert family.type == "gauge" and family.documentation
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    for tube, figures in snap["tubes"].items():
        for field in ("ready", "reserved", "delayed", "buried", "watching"):
            assert samples[(f"facegrid_tube_{field}", (("tube", tube),))] == figures[field]
    assert samples[("facegrid_tube_buried", (("tube", "images"),))] == 1
    assert samples[("facegrid_max_job_size_bytes", ())] == snap["max_job_size"] > 0
    where = (("database", str(db)),)
    assert samples[("facegrid_db_images", where)] == snap["db"]["images"] == 0
    assert samples[("facegrid_db_images_by_status", (*where, ("status", "error")))] == 0
    assert ("facegrid_eta_seconds", ()) not in samples  # unknown: nothing finished yet, so no sample


@pytest.mark.slow
def test_database_counts(beanstalkd, faces_db):
    snap = status_json(beanstalkd.address, "--sample", "0", "--db", faces_db)
    (images,), (faces,) = (
        db_rows(faces_db, "SELECT count(*) FROM images")[0],
        db_rows(faces_db, "SELECT count(*) FROM faces")[0],
    )
    assert snap["db"]["images"] == images and snap["db"]["faces"] == faces
    assert snap["db"]["ok"] == db_rows(faces_db, "SELECT count(*) FROM images WHERE status = 'ok'")[0][0]
    table = run_script("scripts/status", "--beanstalkd", beanstalkd.address, "--sample", "0", "--db", faces_db)
    assert f"{images} photos, {faces} faces" in table.stdout


def test_unreachable_beanstalkd_exits_3(beanstalkd):
    address = beanstalkd.address
    beanstalkd.stop()
    proc = run_script("scripts/status", "--beanstalkd", address, "--sample", "0")
    assert proc.returncode == 3
    assert "cannot reach beanstalkd" in proc.stderr


@pytest.mark.slow
def test_watch_refreshes_until_interrupted(beanstalkd, tmp_path):
    out = tmp_path / "watch.out"
    with open(out, "w") as f:
        proc = start_script(
            "scripts/status",
            "--beanstalkd",
            beanstalkd.address,
            "--watch",
            "--interval",
            "0.3",
            "--db",
            tmp_path / "none.db",
            stdout=f,
        )
        try:
            wait_for(lambda: out.read_text().count("facegrid status") >= 3, 60, what="three refreshes")
            with beanstalkd.client(use="images") as c:
                c.put(b"one")
            wait_for(lambda: "images             1" in out.read_text(), 60, what="the new job shown")
        finally:
            proc.send_signal(signal.SIGINT)
            assert proc.wait(30) == 0


def sample(at, total, deleted):
    return status.Sample(at, {"images": {"total": total, "deleted": deleted}})


def test_history_rates_and_restart():
    h = status.History(window=60)
    h.add(sample(0, 100, 50))
    assert h.rates("images") == (None, None)
    h.add(sample(10, 150, 70))
    assert h.rates("images") == (5.0, 2.0)
    h.add(sample(20, 3, 1))  # beanstalkd restarted: counters went back, history starts again
    assert len(h.samples) == 1
    for t in range(30, 200, 10):
        h.add(sample(t, t, t))
    assert h.samples[-1].at - h.samples[0].at <= 60


def test_eta():
    def snap(img_ready, img_out, ppl_ready, ppl_out):
        tube = {"ready": 0, "reserved": 0, "delayed": 0}
        return {
            "tubes": {
                "images": dict(tube, ready=img_ready, out_per_s=img_out),
                "people": dict(tube, ready=ppl_ready, out_per_s=ppl_out),
            }
        }

    assert status.eta_seconds(snap(0, None, 0, None), "images", "people") == 0.0
    assert status.eta_seconds(snap(100, 10.0, 0, 20.0), "images", "people") == 10.0
    assert status.eta_seconds(snap(100, 10.0, 100, 5.0), "images", "people") == 40.0
    assert status.eta_seconds(snap(100, 0.0, 0, 5.0), "images", "people") is None
    assert status.eta_seconds(snap(100, 10.0, 5, 0.0), "images", "people") == 10.0  # collector between batches
    assert status.eta_seconds(snap(0, 0.0, 5, 0.0), "images", "people") is None
    assert status.fmt_duration(3725) == "1h02m" and status.fmt_duration(75) == "1m15s"


def test_help():
    proc = run_script("scripts/status", "--help")
    assert proc.returncode == 0 and "--watch" in proc.stdout
    assert (ROOT / "scripts/status").stat().st_mode & 0o111


# scripts/buried ------------------------------------------------------------


def buried_json(address, *extra):
    proc = run_script("scripts/buried", "list", "--beanstalkd", address, "--json", *extra)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.slow
def test_buried_list_kick_and_requeue(beanstalkd, faces_dir, tmp_path):
    import shutil

    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(faces_dir / "people/biden/biden2.jpg", photos / "biden2.jpg")
    with beanstalkd.client(use="images") as c:
        for _i in range(30):  # finished jobs: gaps in the ids the scan walks over
            c.delete(c.put(b"done"))
        garbage = c.put(b"not a facegrid job")
    run_script("queuer.py", "--beanstalkd", beanstalkd.address, "--state", tmp_path / "q.sqlite", photos, check=True)
    with beanstalkd.client(watch="images") as c:  # one delivery that "crashed a worker"
        job = c.reserve(timeout=5)
        if job.id == garbage:
            c.release(job)
            job = c.reserve(timeout=5)
        c.release(job)
    photo_job = job.id
    db = tmp_path / "faces.db"
    args = ("--beanstalkd", beanstalkd.address)
    run_script("filter.py", *args, "--burst", "--set", "beanstalkd.max_attempts=1", check=True)
    run_script("collector.py", *args, "--burst", "--db", db, check=True)
    assert beanstalkd.tube("images")["current-jobs-buried"] == 2

    listed = buried_json(beanstalkd.address, "--db", db)
    jobs = {j["id"]: j for j in listed["buried"]}
    assert set(jobs) == {garbage, photo_job} and listed["counted"] == {"images": 2, "people": 0}
    assert jobs[garbage]["reason"].startswith("bad job body: wrong magic")
    assert jobs[photo_job]["path"].endswith("biden2.jpg")
    assert "gave up after" in jobs[photo_job]["reason"]
    # listing changed nothing
    with beanstalkd.client() as c:
        assert c.stats_job(garbage)["state"] == "buried" and c.stats_job(garbage)["kicks"] == 0
    table = run_script("scripts/buried", "list", *args, "--db", db).stdout
    assert "biden2.jpg" in table and "2 buried job(s)" in table

    kicked = run_script("scripts/buried", "kick", "--id", str(garbage), *args)
    assert kicked.returncode == 0 and "kicked 1 of 1" in kicked.stdout
    assert beanstalkd.tube("images")["current-jobs-ready"] == 1

    requeued = run_script("scripts/buried", "requeue", "--all", "--tube", "images", *args)
    assert requeued.returncode == 0 and "requeued 1 job(s)" in requeued.stdout
    run_script("filter.py", *args, "--burst", check=True)
    run_script("collector.py", *args, "--burst", "--db", db, check=True)
    assert db_rows(db, "SELECT status, face_count FROM images WHERE path LIKE '%biden2.jpg'") == [("ok", 1)]
    left = buried_json(beanstalkd.address, "--db", db)["buried"]
    assert [j["id"] for j in left] == [garbage]  # bad bodies stay buried, with their reason


def test_buried_usage(beanstalkd):
    assert run_script("scripts/buried", "kick", "--beanstalkd", beanstalkd.address).returncode == 2
    assert run_script("scripts/buried", "list", "3", "--beanstalkd", beanstalkd.address).returncode == 2
    proc = run_script("scripts/buried", "kick", "--all", "--beanstalkd", beanstalkd.address)
    assert proc.returncode == 0 and "kicked 0 job(s)" in proc.stdout


def test_buried_help():
    proc = run_script("scripts/buried", "--help")
    assert proc.returncode == 0 and "requeue" in proc.stdout


@pytest.mark.parametrize(
    "answer",
    [b"", b"OK 50\r\nid: 1\r\n", b"GARBAGE\r\n", b"OK notanumber\r\n"],
    ids=["hangs-up", "cut-inside-answer", "not-beanstalkd", "bad-size"],
)
def test_buried_scan_network_error_is_one_line(answer):
    """The scan's own pipelined client against a server that breaks the protocol: one clean error."""
    import socket
    import threading

    from facegrid import buried
    from facegrid.errors import QueueUnavailable
    from facegrid.settings import Beanstalkd as Conf

    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def serve():
        conn, _ = server.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(answer)
        server.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    scanner = buried.Scanner(Conf(host="127.0.0.1", port=port, io_timeout=10))
    try:
        with pytest.raises(QueueUnavailable) as err:
            scanner.stats(1, 3)
    finally:
        scanner.close()
        t.join(10)
    message = str(err.value)
    assert "\n" not in message and f"127.0.0.1:{port}" in message, message
