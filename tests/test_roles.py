"""Each role on its own, against a real beanstalkd and real photos."""

from __future__ import annotations

import json
import shutil

import factories
import numpy as np
import pytest
from conftest import Beanstalkd, children, db_rows, run_script, start_script, tiny_jpeg, wait_for

from facegrid import envelope
from facegrid.envelope import Result


def server_stat(beanstalkd, name: str) -> int:
    """A counter of beanstalkd's own stats (commands it has answered since it started)."""
    with beanstalkd.client() as c:
        return int(c.stats()[name])


def copy_people(faces_dir, dest, names):
    dest.mkdir(parents=True, exist_ok=True)
    for rel in names:
        shutil.copy(faces_dir / rel, dest / rel.replace("/", "_"))
    return dest


# queuer ----------------------------------------------------------------------


def test_queuer_puts_one_job_per_photo_with_metadata(beanstalkd, faces_dir, tmp_path):
    src = copy_people(faces_dir, tmp_path / "in", ["people/biden/biden.jpg", "groups/two_people.jpg"])
    (src / "notes.txt").write_text("not a photo")
    (src / "UPPER.JPG").write_bytes((faces_dir / "people/biden/biden2.jpg").read_bytes())
    before = {p.name: p.stat().st_mtime_ns for p in src.iterdir()}
    run_script("queuer.py", "--beanstalkd", beanstalkd.address, "--state", tmp_path / "q.sqlite", src, check=True)
    with beanstalkd.client(watch="images") as c:
        jobs = [envelope.decode(c.reserve(timeout=1).body) for _ in range(3)]
        assert beanstalkd.tube("images")["current-jobs-ready"] == 0
    import hashlib

    for job in jobs:
        data = (src / job.path.rsplit("/", 1)[1]).read_bytes()
        assert job.image == data and job.id == hashlib.sha256(data).hexdigest()
        assert job.size == len(data) and job.host and job.mtime > 0 and job.reencoded is None
    assert {p.name: p.stat().st_mtime_ns for p in src.iterdir()} == before  # never touched


@pytest.mark.slow
def test_queuer_requeue_and_changed_files(beanstalkd, faces_dir, tmp_path):
    src = copy_people(faces_dir, tmp_path / "in", ["people/biden/biden.jpg", "people/biden/biden2.jpg"])
    args = ["--beanstalkd", beanstalkd.address, "--state", tmp_path / "q.sqlite", src]
    assert "queued=2" in run_script("queuer.py", *args, check=True).stdout
    assert "queued=0 unchanged=2" in run_script("queuer.py", *args, check=True).stdout
    assert "queued=2" in run_script("queuer.py", *args, "--requeue", check=True).stdout
    shutil.copy(faces_dir / "people/obama/obama.jpg", src / "people_biden_biden.jpg")  # content changed
    assert "queued=1 unchanged=1" in run_script("queuer.py", *args, check=True).stdout
    assert beanstalkd.tube("images")["current-jobs-ready"] == 5


@pytest.mark.slow
def test_queuer_keeps_a_bounded_backlog(beanstalkd, faces_dir, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    data = (faces_dir / "people/obama/obama_240p.jpg").read_bytes()
    for i in range(30):  # 30 distinct photos (one extra byte each)
        (src / f"p{i:02d}.jpg").write_bytes(data + bytes([i]))
    proc = start_script(
        "queuer.py", "--beanstalkd", beanstalkd.address, "--state", tmp_path / "q.sqlite", "--max-ready", "5", src
    )
    for line in proc.stderr:  # its own log says when it stops to wait on the backlog
        if "waiting for the filters" in line:
            break
    else:
        raise AssertionError("the queuer ended without waiting on its backlog")
    checks = server_stat(beanstalkd, "cmd-stats-tube")
    wait_for(lambda: server_stat(beanstalkd, "cmd-stats-tube") >= checks + 3, what="three more looks at the backlog")
    assert proc.poll() is None, "queuer should be waiting"
    assert beanstalkd.tube("images")["current-jobs-ready"] == 5
    taken = 0
    with beanstalkd.client(watch="images") as c:
        while taken < 30:
            job = c.reserve(timeout=20)
            c.delete(job)
            taken += 1
            assert beanstalkd.tube("images")["current-jobs-ready"] <= 5
    proc.communicate(timeout=60)
    assert proc.returncode == 0


@pytest.mark.slow
def test_queuer_reencodes_a_photo_over_max_job_size(tmp_path, faces_dir):
    server = Beanstalkd(tmp_path / "binlog", max_job_size=120_000).start()
    try:
        src = copy_people(faces_dir, tmp_path / "in", ["people/obama/obama3.jpg"])
        assert (src / "people_obama_obama3.jpg").stat().st_size > 120_000
        addr = ["--beanstalkd", server.address]
        q = run_script("queuer.py", *addr, "--state", tmp_path / "q.sqlite", "--allow-small-jobs", src, check=True)
        assert "reencoded=1" in q.stdout and "photos over 120000 bytes are re-encoded smaller" in q.stderr
        db = tmp_path / "f.db"
        run_script("filter.py", *addr, "--burst", check=True)
        run_script("collector.py", *addr, "--db", db, "--burst", check=True)
        status, faces, reencoded, size, width, height = db_rows(
            db, "SELECT status, face_count, reencoded, size, width, height FROM images"
        )[0]
        assert status == "ok" and faces == 1 and '"original_bytes"' in reencoded
        assert size == (src / "people_obama_obama3.jpg").stat().st_size
        # width, height and boxes are the original photo's, as for a photo sent whole
        from PIL import Image, ImageOps

        with Image.open(src / "people_obama_obama3.jpg") as img:
            upright = ImageOps.exif_transpose(img).size
        shrunk = json.loads(reencoded)
        assert (width, height) == upright and shrunk["width"] < upright[0], (width, height, shrunk)
        box = db_rows(db, "SELECT top, right, bottom, left FROM faces")[0]
    finally:
        server.stop()
    whole = Beanstalkd(tmp_path / "binlog2").start()  # the same photo, sent whole
    try:
        addr = ["--beanstalkd", whole.address]
        run_script("queuer.py", *addr, "--state", tmp_path / "q2.sqlite", src, check=True)
        run_script("filter.py", *addr, "--burst", check=True)
        run_script("collector.py", *addr, "--db", tmp_path / "g.db", "--burst", check=True)
        assert db_rows(tmp_path / "g.db", "SELECT width, height FROM images") == [(width, height)]
        ref = db_rows(tmp_path / "g.db", "SELECT top, right, bottom, left FROM faces")[0]
    finally:
        whole.stop()
    # HOG on the smaller copy draws its box a little differently; in shrunk pixels it would be off by half
    assert max(abs(a - b) for a, b in zip(box, ref, strict=False)) <= 0.15 * (ref[1] - ref[3]), (box, ref)


# filter ----------------------------------------------------------------------


@pytest.mark.slow
def test_filter_turns_an_image_job_into_a_result(beanstalkd, faces_dir, tmp_path):
    src = copy_people(faces_dir, tmp_path / "in", ["groups/obama_and_biden.jpg"])
    addr = ["--beanstalkd", beanstalkd.address]
    run_script("queuer.py", *addr, "--state", tmp_path / "q.sqlite", src, check=True)
    f = run_script("filter.py", *addr, "--burst", check=True)
    assert "1 photos" in f.stderr and "ok=1" in f.stderr
    assert beanstalkd.tube("images")["current-jobs-ready"] == 0
    with beanstalkd.client(watch="people") as c:
        res = envelope.decode(c.reserve(timeout=5).body)
    assert isinstance(res, Result) and res.status == "ok" and len(res.faces) == 3
    from PIL import Image, ImageOps

    with Image.open(src / "groups_obama_and_biden.jpg") as img:
        assert (res.width, res.height) == ImageOps.exif_transpose(img).size  # the upright photo's own size
    for face in res.faces:
        top, right, bottom, left = face.box
        assert 0 <= left < right <= res.width and 0 <= top < bottom <= res.height
        assert face.encoding.shape == (128,) and 0.1 < float(np.linalg.norm(face.encoding)) < 2
        assert face.crop[:2] == b"\xff\xd8"
    assert [f.box[3] for f in res.faces] == sorted(f.box[3] for f in res.faces)  # left to right
    assert res.annotated[:2] == b"\xff\xd8" and res.filter["pid"] > 0
    assert set(res.timings) >= {"decode_ms", "detect_ms", "encode_ms", "total_ms"}
    assert res.settings["detect_max_side"] == 1024 and res.settings["model"] == "hog"


@pytest.mark.slow
def test_filter_workers_are_separate_processes_and_auto_is_sized(beanstalkd, faces_dir, tmp_path):
    """filter.py --workers 2 runs two worker processes, each with its own connection, and the
    results say which process made them; --workers auto starts as many as it says, within the CPUs."""
    import os
    import signal

    src = tmp_path / "in"
    src.mkdir()
    data = (faces_dir / "people/obama/obama_240p.jpg").read_bytes()
    for i in range(6):
        (src / f"p{i}.jpg").write_bytes(data + bytes([i]))
    addr = ["--beanstalkd", beanstalkd.address]
    run_script("queuer.py", *addr, "--state", tmp_path / "q.sqlite", src, check=True)
    proc = start_script("filter.py", *addr, "--workers", "2")
    try:
        wait_for(lambda: beanstalkd.tube("images")["current-watching"] == 2, what="two workers watching images")
        wait_for(lambda: beanstalkd.tube("people")["current-jobs-ready"] == 6, timeout=300, what="six results")
        kids = set(children(proc.pid))
        assert len(kids) == 2 and proc.pid not in kids, kids
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    assert proc.returncode == 0
    with beanstalkd.client(watch="people") as c:
        pids = {envelope.decode(c.reserve(timeout=5).body).filter["pid"] for _ in range(6)}
    assert pids <= kids, (pids, kids)  # made in the worker processes, never in the parent

    auto = run_script("filter.py", *addr, "--workers", "auto", "--burst", check=True)
    started = int(auto.stderr.split("filter pool: ", 1)[1].split(" worker", 1)[0])
    assert 1 <= started <= len(os.sched_getaffinity(0)), auto.stderr[-2000:]


# collector --------------------------------------------------------------------


def make_result(image_id: str, faces: int, path: str = "/photos/x.jpg") -> Result:
    rng = np.random.default_rng(len(path) + faces)
    encodings = [rng.normal(0, 0.1, 128) for _ in range(faces)]
    return factories.result(
        id=image_id,
        path=path,
        host="h1",
        size=10,
        mtime=1.0,
        queued_at=2.0,
        width=100,
        height=80,
        annotated=tiny_jpeg(1, 32),
        faces=factories.faces(encodings, (1, 20, 30, 2), tiny_jpeg(2)),
    )


@pytest.mark.slow
def test_collector_stores_a_result_delivered_twice_once(beanstalkd, tmp_path):
    image_id = "ab" * 32
    with beanstalkd.client(use="people") as c:
        for _ in range(2):
            c.put(envelope.encode_result(make_result(image_id, 2)))
        c.put(envelope.encode_result(make_result("cd" * 32, 0)))
    db = tmp_path / "f.db"
    proc = run_script("collector.py", "--beanstalkd", beanstalkd.address, "--db", db, "--burst", check=True)
    assert "3 results stored" in proc.stderr
    assert db_rows(db, "SELECT id, status, face_count FROM images ORDER BY id") == [
        (image_id, "ok", 2),
        ("cd" * 32, "no_faces", 0),
    ]
    assert db_rows(db, "SELECT count(*) FROM faces") == [(2,)]
    assert db_rows(db, "SELECT count(*) FROM annotated") == [(2,)]
    assert beanstalkd.tube("people")["current-jobs-ready"] == 0
    assert db_rows(db, "PRAGMA journal_mode") == [("wal",)]
    # a later result for the same photo with fewer faces leaves no stale face rows
    with beanstalkd.client(use="people") as c:
        c.put(envelope.encode_result(make_result(image_id, 1)))
    run_script("collector.py", "--beanstalkd", beanstalkd.address, "--db", db, "--burst", check=True)
    assert db_rows(db, "SELECT count(*) FROM faces WHERE image_id = ?", (image_id,)) == [(1,)]


@pytest.mark.slow
def test_collector_burst_waits_for_reserved_images(beanstalkd, tmp_path):
    with beanstalkd.client(use="images", watch="images") as c:
        c.put(b"held by a filter")
        held = c.reserve(timeout=1)
        proc = start_script("collector.py", "--beanstalkd", beanstalkd.address, "--db", tmp_path / "f.db", "--burst")
        wait_for(lambda: beanstalkd.tube("people")["current-watching"] >= 1, what="the collector watching people")
        # each time its reserve times out in burst mode, the collector asks whether the images tube is idle
        checks = server_stat(beanstalkd, "cmd-stats-tube")
        wait_for(
            lambda: server_stat(beanstalkd, "cmd-stats-tube") >= checks + 4,
            timeout=120,
            what="the collector asking twice more whether the grid is idle",
        )
        assert proc.poll() is None, "collector exited while a filter still held an image job"
        c.delete(held)
    proc.communicate(timeout=60)
    assert proc.returncode == 0


@pytest.mark.parametrize("role", ["filter.py", "collector.py"])
def test_sigterm_when_idle_exits_0(beanstalkd, tmp_path, role):
    import signal

    proc = start_script(
        role,
        "--beanstalkd",
        beanstalkd.address,
        "--db" if role == "collector.py" else "-v",
        *([tmp_path / "f.db"] if role == "collector.py" else []),
    )
    wait_for(
        lambda: beanstalkd.tube("images" if role == "filter.py" else "people")["current-watching"] >= 1,
        what=f"{role} watching its tube",
    )
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode == 0


@pytest.mark.slow
def test_workers_auto_budgets_for_the_largest_photo_a_worker_accepts(beanstalkd, tmp_path):
    """--workers auto divides memory by what a photo of filter.max_pixels needs, not by a JPEG's need."""
    from facegrid import filter_pool

    assert filter_pool.worker_need(180_000_000) >= 180_000_000 * 8  # an RGBA PNG: its pixels and one premultiplied copy
    huge = filter_pool.available_memory() // 4  # pixels whose decode alone would need twice the memory there is
    proc = run_script(
        "filter.py",
        "--beanstalkd",
        beanstalkd.address,
        "--workers",
        "auto",
        "--burst",
        "--set",
        f"filter.max_pixels={huge}",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "filter pool: 1 worker(s)" in proc.stderr, proc.stderr[-2000:]
