"""The whole grid on the labelled photos: queuer -> filter (2 workers) + collector -> search."""

from __future__ import annotations

import csv
import json
import shutil

import pytest
from conftest import db_rows, run_script

pytestmark = pytest.mark.slow  # starts a grid on the labelled photos


@pytest.fixture
def grid(labelled_grid):
    """The labelled photos through the grid (made once per run in conftest.labelled_grid)."""
    return labelled_grid


def test_every_labelled_photo_is_stored_once_with_its_faces(grid, labels, faces_dir):
    rows = db_rows(grid["db"], "SELECT path, status, face_count FROM images")
    by_path = {r[0]: r for r in rows}
    assert len(rows) == len(labels) == len(by_path)
    for rel, label in labels.items():
        path, status, count = by_path[str(faces_dir / rel)]
        assert status == "ok" and count == label["faces"], (rel, status, count)
    faces = db_rows(grid["db"], "SELECT count(*), count(DISTINCT image_id || ':' || idx) FROM faces")[0]
    assert faces[0] == faces[1] == sum(v["faces"] for v in labels.values())
    assert db_rows(grid["db"], "SELECT count(*) FROM annotated")[0][0] == len(labels)


def test_both_workers_shared_the_work(grid):
    pids = db_rows(grid["db"], "SELECT DISTINCT filter_pid FROM images")
    assert len(pids) == 2, pids


def test_tubes_are_empty_after_burst(grid):
    for tube in ("images", "people"):
        t = grid["server"].tube(tube)
        assert t["current-jobs-ready"] == t["current-jobs-reserved"] == t["current-jobs-buried"] == 0


def test_search_finds_exactly_the_person(grid, labels, faces_dir, tmp_path):
    target = tmp_path / "obama"
    target.mkdir()
    for name in ("obama.jpg", "obama2.jpg"):
        shutil.copy(faces_dir / "people" / "obama" / name, target / name)
    out = tmp_path / "out"
    proc = run_script("search.py", target, "--db", grid["db"], "--out", out, "--json", check=True)
    found = {m["path"] for m in json.loads(proc.stdout)["matches"]}
    expected = {str(faces_dir / rel) for rel, v in labels.items() if "obama" in v["identities"]}
    expected -= {str(faces_dir / "people" / "obama" / n) for n in ("obama.jpg", "obama2.jpg")}
    assert found == expected
    with open(out / "report.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["rank"]) for r in rows] == list(range(1, len(expected) + 1))
    distances = [float(r["distance"]) for r in rows]
    assert distances == sorted(distances) and distances[-1] <= 0.5
    for r in rows:
        assert (out / r["file"]).stat().st_size > 1000 and r["file"].endswith(".jpg")


def test_search_text_output_ranks_matches(grid, faces_dir, tmp_path):
    target = tmp_path / "rose"
    target.mkdir()
    shutil.copy(faces_dir / "people" / "rose_leslie" / "img1.jpg", target / "a.jpg")
    proc = run_script("search.py", target, "--db", grid["db"], "--out", tmp_path / "o")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[0].split()[:3] == ["rank", "distance", "confidence"]
    paths = sorted(
        line.split()[-1].rsplit("/", 2)[-2] + "/" + line.split()[-1].rsplit("/", 1)[-1] for line in lines[1:]
    )
    assert paths == ["groups/kit_with_rose.jpg", "rose_leslie/img2.jpg"]


def test_search_with_no_match_exits_1(grid, faces_dir, tmp_path):
    target = tmp_path / "lin"
    target.mkdir()
    # his only photo is the target itself, which search leaves out
    shutil.copy(faces_dir / "people" / "lin_manuel_miranda" / "lin_manuel_miranda.png", target / "x.png")
    proc = run_script("search.py", target, "--db", grid["db"], "--out", tmp_path / "o", "--json")
    assert proc.returncode == 1, proc.stderr
    assert json.loads(proc.stdout)["matches"] == []


def test_search_names_target_files_without_exactly_one_face(grid, faces_dir, tmp_path):
    target = tmp_path / "mixed"
    target.mkdir()
    shutil.copy(faces_dir / "groups" / "two_people.jpg", target / "group.jpg")
    (target / "empty.png").write_bytes(b"")
    proc = run_script("search.py", target, "--db", grid["db"], "--out", tmp_path / "o")
    assert proc.returncode == 2
    assert "group.jpg: 2 faces found" in proc.stderr
    assert "empty.png: file is empty" in proc.stderr
    assert "no photo with one clear face" in proc.stderr
    shutil.copy(faces_dir / "people" / "biden" / "biden.jpg", target / "biden.jpg")
    proc = run_script("search.py", target, "--db", grid["db"], "--out", tmp_path / "o", "--json")
    assert proc.returncode == 0, proc.stderr
    assert "group.jpg: 2 faces found" in proc.stderr
    assert any(m["path"].endswith("biden2.jpg") for m in json.loads(proc.stdout)["matches"])


def test_second_queuer_run_queues_nothing_new(grid, faces_dir, labels):
    q = run_script("queuer.py", *grid["addr"], "--state", grid["tmp"] / "q.sqlite", faces_dir, check=True)
    assert "queued=0" in q.stdout and f"unchanged={len(labels)}" in q.stdout, q.stdout
    assert grid["server"].tube("images")["current-jobs-ready"] == 0
