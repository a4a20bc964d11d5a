"""Video files through the real grid: queuer.py -> filter.py -> collector.py -> search.py.

The videos are made here with OpenCV's VideoWriter from the labelled photos, with
known people in known time spans and stretches with no one.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from pathlib import Path

import pytest
from conftest import Beanstalkd, db_rows, run_script
from videomaker import make_video

from facegrid import envelope
from facegrid.errors import BadJob

pytestmark = pytest.mark.slow  # starts grids on generated videos

# (start_s, end_s, photo shown, target photo of the same person, drifting)
CAST = [
    (5, 13, "people/obama/obama.jpg", "people/obama/obama2.jpg", False),
    (16, 24, "people/biden/biden.jpg", "people/biden/biden2.jpg", True),
    (27, 35, "people/kit_harington/john1.jpeg", "people/kit_harington/john2.jpeg", False),
]
DURATION = 38
STEP = 1.0  # [video] fps = 1


def grid(beanstalkd, work: Path, folder: Path, *queuer_args: str) -> Path:
    db = work / "faces.db"
    q = run_script("queuer.py", "--beanstalkd", beanstalkd.address, "--state", work / "q.sqlite", *queuer_args, folder)
    assert q.returncode == 0, q.stderr[-2000:]
    run_script("filter.py", "--beanstalkd", beanstalkd.address, "--burst", "--workers", "1", check=True, timeout=600)
    run_script("collector.py", "--beanstalkd", beanstalkd.address, "--burst", "--db", db, check=True)
    return db


@pytest.fixture
def clip_grid(beanstalkd, faces_dir, tmp_path):
    folder = tmp_path / "videos"
    folder.mkdir()
    spans = [(s, e, faces_dir / photo, drift) for s, e, photo, _, drift in CAST]
    clip = folder / "Clip.MP4"  # any case
    make_video(clip, spans, DURATION)  # obama and kit: static shots; biden: a slow pan
    db = grid(beanstalkd, tmp_path, folder)
    return tmp_path, clip, db


def search(work: Path, db: Path, faces_dir: Path, target_photo: str, *extra: str):
    target = work / ("target-" + Path(target_photo).stem)
    target.mkdir(exist_ok=True)
    shutil.copy(faces_dir / target_photo, target)
    proc = run_script("search.py", target, "--db", db, "--out", work / ("out-" + target.name), *extra)
    return proc, work / ("out-" + target.name)


def test_each_person_found_once_with_the_span(clip_grid, faces_dir):
    work, clip, db = clip_grid
    (video,) = db_rows(db, "SELECT path, fps, frames, duration FROM videos")
    assert video[0].endswith("Clip.MP4") and video[1] == 1.0
    assert abs(video[3] - DURATION) < 0.5
    # drifting shots send every sample; the empty stretches and the static ones cost one frame each
    assert 8 <= video[2] < DURATION
    for k, (start, end, _, target, _) in enumerate(CAST):
        proc, out = search(work, db, faces_dir, target, "--json")
        assert proc.returncode == 0, proc.stderr[-2000:]
        found = [m for m in json.loads(proc.stdout)["matches"] if m.get("video")]
        assert len(found) == 1, (target, found)
        m = found[0]
        assert m["path"].endswith("Clip.MP4")
        assert abs(m["start_s"] - start) <= STEP and abs(m["end_s"] - end) <= STEP, (target, m)
        # no leak into another person's stretch
        for j, (s2, e2, *_rest) in enumerate(CAST):
            if j != k:
                assert m["end_s"] < s2 or m["start_s"] >= e2, (target, m, (s2, e2))
        assert (out / m["file"]).is_file()  # the track's best frame, annotated
        html = (out / "report.html").read_text()
        assert "video 00:00:" in html


def test_table_prints_the_span_and_export_writes_the_frame(clip_grid, faces_dir):
    work, clip, db = clip_grid
    proc, out = search(work, db, faces_dir, CAST[0][3])
    assert proc.returncode == 0, proc.stderr[-2000:]
    (line,) = [x for x in proc.stdout.splitlines() if "Clip.MP4" in x]
    assert "Clip.MP4 @ 00:00:05-00:00:1" in line, line
    best = db_rows(db, "SELECT best_image_id FROM tracks ORDER BY start_s LIMIT 1")[0][0]
    exp = run_script("search.py", "--db", db, "--export", work / "exp", "--id", best[:12])
    assert exp.returncode == 0, exp.stderr
    assert (work / "exp" / f"{best}.jpg").read_bytes()[:3] == b"\xff\xd8\xff"


def test_people_counts_video_appearances(clip_grid):
    work, clip, db = clip_grid
    proc = run_script("search.py", "--people", "--db", db, "--out", work / "people")
    assert proc.returncode == 0, proc.stderr[-2000:]
    html = (work / "people" / "index.html").read_text()
    assert html.count("1 video appearance(s)</b>") == 3
    for start, *_ in CAST:
        assert f"Clip.MP4 @ 00:00:{start:02d}-" in html


def test_status_counts_videos_and_frames_apart_from_photos(clip_grid, beanstalkd):
    work, clip, db = clip_grid
    (frames,), (faces,) = db_rows(db, "SELECT count(*) FROM frames")[0], db_rows(db, "SELECT count(*) FROM faces")[0]
    assert frames > 3
    args = ("--beanstalkd", beanstalkd.address, "--sample", "0", "--db", db)
    snap = json.loads(run_script("scripts/status", *args, "--json", check=True).stdout)
    assert (snap["db"]["videos"], snap["db"]["frames"], snap["db"]["images"]) == (1, frames, frames)
    table = run_script("scripts/status", *args, check=True).stdout
    assert f"0 photos, 1 videos ({frames} frames), {faces} faces" in table, table


def test_tracks_stored_one_frame_at_a_time_equal_tracks_stored_at_once(clip_grid, beanstalkd, tmp_path):
    """The collector builds a video's tracks on from each batch's earliest frame."""
    work, clip, db = clip_grid
    address = ("--beanstalkd", beanstalkd.address)
    run_script("queuer.py", *address, "--state", tmp_path / "again.sqlite", clip.parent, check=True)
    run_script("filter.py", *address, "--burst", "--workers", "1", check=True, timeout=600)
    one_by_one = tmp_path / "one-by-one.db"
    run_script("collector.py", *address, "--burst", "--batch", "1", "--db", one_by_one, check=True)
    sql = "SELECT start_s, end_s, faces, best_image_id, best_idx FROM tracks ORDER BY start_s"
    assert db_rows(one_by_one, sql) == db_rows(db, sql) and len(db_rows(db, sql)) == 3
    per_face = "SELECT image_id, idx, track FROM track_faces ORDER BY image_id, idx"
    assert all(track is not None for *_, track in db_rows(one_by_one, per_face))


def test_requeue_changes_nothing(clip_grid, beanstalkd):
    work, clip, db = clip_grid
    before = db_rows(db, "SELECT image_id, t, t_end FROM frames ORDER BY t")
    tracks = db_rows(db, "SELECT start_s, end_s FROM tracks ORDER BY start_s")
    again = run_script("queuer.py", "--beanstalkd", beanstalkd.address, "--state", work / "q.sqlite", clip.parent)
    assert "unchanged=1" in again.stderr and beanstalkd.tube("images")["current-jobs-ready"] == 0
    grid(beanstalkd, work, clip.parent, "--requeue")
    assert db_rows(db, "SELECT image_id, t, t_end FROM frames ORDER BY t") == before
    assert db_rows(db, "SELECT start_s, end_s FROM tracks ORDER BY start_s") == tracks
    assert db_rows(db, "SELECT count(*) FROM videos") == [(1,)]


def test_interrupted_video_resumes_where_it_stopped(beanstalkd, faces_dir, tmp_path):
    folder = tmp_path / "v"
    folder.mkdir()
    clip = make_video(folder / "pan.mkv", [(0, 12, faces_dir / CAST[1][2])], 12, drift=True)
    state = tmp_path / "q.sqlite"
    every = ("--set", "video.min_change=0")  # every sample sent: 0, 1, ... 11 s
    first = run_script("queuer.py", "--beanstalkd", beanstalkd.address, "--state", state, *every, folder)
    assert first.returncode == 0, first.stderr
    whole = beanstalkd.tube("images")["current-jobs-ready"]
    assert whole == 12
    # as if a run had put the frames up to 5 s and then died: the state says so
    with sqlite3.connect(state) as conn:
        conn.execute("DELETE FROM files")
        conn.execute("INSERT INTO video_progress SELECT sha256, 5.0 FROM (SELECT ? AS sha256)", (sha(clip),))
    again = run_script("queuer.py", "--beanstalkd", beanstalkd.address, "--state", state, *every, folder)
    assert again.returncode == 0 and "resuming after 5.0 s" in again.stderr, again.stderr
    assert beanstalkd.tube("images")["current-jobs-ready"] - whole == 6  # the frames at 6..11 s only


def test_a_video_whose_name_is_not_utf8_is_queued(beanstalkd, faces_dir, tmp_path):
    folder = tmp_path / "v"
    folder.mkdir()
    odd = make_video(tmp_path / "odd.mp4", [(0, 3, faces_dir / CAST[0][2])], 3)
    os.rename(odd, os.path.join(os.fsencode(folder), b"caf\xe9-\xff.mp4"))
    make_video(folder / "plain.mp4", [(0, 3, faces_dir / CAST[2][2])], 3)
    db = grid(beanstalkd, tmp_path, folder)
    paths = sorted(p for (p,) in db_rows(db, "SELECT path FROM videos"))
    assert [os.path.basename(p) for p in paths] == ["caf\\xe9-\\xff.mp4", "plain.mp4"], paths
    assert db_rows(db, "SELECT count(*) FROM images WHERE status = 'error'") == [(0,)]
    assert db_rows(db, "SELECT count(*) FROM tracks") == [(2,)]


def test_a_frame_over_max_job_size_is_reencoded_like_a_photo(faces_dir, tmp_path):
    server = Beanstalkd(tmp_path / "binlog", max_job_size=24_000).start()
    try:
        folder = tmp_path / "v"
        folder.mkdir()
        make_video(folder / "big.mp4", [(0, 4, faces_dir / CAST[0][2])], 4, size=(1280, 720), drift=True)
        db = grid(server, tmp_path, folder, "--set", "video.min_change=0", "--allow-small-jobs")
    finally:
        server.stop()
    assert db_rows(db, "SELECT count(*), sum(status = 'ok') FROM images") == [(4, 4)]
    assert db_rows(db, "SELECT frames FROM videos") == [(4,)]
    assert db_rows(db, "SELECT count(*) FROM tracks") == [(1,)]


def sha(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_unreadable_and_truncated_videos(beanstalkd, faces_dir, tmp_path):
    folder = tmp_path / "v"
    folder.mkdir()
    (folder / "noise.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40)
    (folder / "empty.webm").write_bytes(b"")
    whole = make_video(tmp_path / "whole.avi", [(0, 20, faces_dir / CAST[0][2])], 20, drift=True)
    data = whole.read_bytes()
    (folder / "cut.avi").write_bytes(data[: len(data) // 2])  # the end of the file is gone
    db = grid(beanstalkd, tmp_path, folder)
    errors = dict(db_rows(db, "SELECT path, error FROM images WHERE status = 'error'"))
    assert len(errors) == 2, errors
    assert any(p.endswith("noise.mp4") for p in errors) and any(p.endswith("empty.webm") for p in errors)
    assert all("video" in e for e in errors.values())
    (frames,) = db_rows(db, "SELECT frames FROM videos WHERE path LIKE '%cut.avi'")[0]
    assert 4 <= frames < 20  # what decoded before the damage is kept
    spans = db_rows(db, "SELECT start_s, end_s FROM tracks")
    assert spans and spans[0][0] == 0.0


def test_frame_fields_checked_at_the_door():
    vid = "ab" * 32
    jpeg = envelope_jpeg()
    frame = {"video_id": vid, "t": 3.0, "t_end": 5.0, "index": 90, "fps": 1.0, "duration": 60.0}
    job = envelope.ImageJob(
        id=envelope.frame_id(vid, 3.0),
        path="/v/a.mp4",
        host="h",
        size=len(jpeg),
        mtime=1.0,
        queued_at=2.0,
        image=jpeg,
        frame=frame,
    )
    body = envelope.encode_image_job(job)
    assert body[4:6] == b"\x00\x02"  # version 2: an older receiver refuses it instead of storing a photo
    back = envelope.decode(body)
    assert back.frame == frame and back.id == job.id
    for bad in (
        {"t": 4.0},  # the id no longer names this frame
        {"t_end": 2.0},
        {"video_id": "xyz"},
        {"index": -1},
        {"fps": 0},
    ):
        forged = envelope.ImageJob(**{**job.__dict__, "frame": {**frame, **bad}})
        with pytest.raises(BadJob):
            envelope.decode(envelope.encode_image_job(forged))
    photo = envelope.ImageJob(**{**job.__dict__, "frame": None})
    v1 = envelope.encode_image_job(photo)
    with pytest.raises(BadJob):  # a version 2 body must carry a frame
        envelope.decode(v1[:4] + b"\x00\x02" + v1[6:])


def envelope_jpeg() -> bytes:
    from conftest import tiny_jpeg

    return tiny_jpeg(7, 32)


def test_schema_2_database_gains_the_video_tables(tmp_path):
    from facegrid import store

    path = tmp_path / "old.db"
    db = store.open_db(path)
    for table in ("videos", "frames", "tracks", "track_faces"):
        db.execute(f"DROP TABLE {table}")
    db.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    db.conn.close()
    ro = store.open_readonly(path)  # search on a schema 2 database: no video tables, no video results
    assert not store.has_videos(ro)
    ro.conn.close()
    db = store.open_db(path)
    assert store.get_meta(db, "schema_version") == str(store.SCHEMA_VERSION)
    assert {"videos", "frames", "tracks", "track_faces"} <= set(db.table_names())
