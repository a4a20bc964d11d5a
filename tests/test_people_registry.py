"""The people registry through the real grid: queuer, filter, collector, `facegrid people`, search.py.

A first batch of the labelled photos goes through the grid, its persons are made and one is
named; more photos of that person go through the same grid into the same database; after
`facegrid people update` the name stays and the person has the new photos too. Merge, split
and reject made by hand survive the update.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from conftest import ROOT, run_script, start_script

pytestmark = pytest.mark.slow

FIRST = [
    "people/obama/obama.jpg",
    "people/obama/obama2.jpg",
    "people/obama/obama3.jpg",
    "people/obama/obama_480p.jpg",
    "people/biden/biden.jpg",
    "people/biden/biden2.jpg",
    "people/kit_harington/john1.jpeg",
    "people/kit_harington/john2.jpeg",
    "people/kit_harington/johnsnow_test1.jpg",
    "people/alex_lacamoire/img1.jpg",
    "people/alex_lacamoire/alex_lacamoire_test1.jpg",
]
LATER = ["people/obama/obama_720p.jpg", "people/obama/obama_test1.jpg", "groups/kit_with_rose.jpg"]


def people(*args, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "facegrid", "people", *map(str, args)], cwd=ROOT, capture_output=True, text=True
    )
    if check:
        assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def ingest(beanstalkd, faces_dir, tmp_path, db, names: list[str], batch: str) -> None:
    """These labelled photos through queuer.py, filter.py and collector.py into db."""
    folder = tmp_path / batch
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(faces_dir / name, folder / name)
    addr = ["--beanstalkd", beanstalkd.address]
    run_script("queuer.py", *addr, "--state", tmp_path / f"{batch}.sqlite", folder, check=True)
    collector = start_script("collector.py", *addr, "--db", db, "--burst")
    run_script("filter.py", *addr, "--workers", "1", "--burst", check=True, timeout=600)
    _, err = collector.communicate(timeout=300)
    assert collector.returncode == 0, err


def person_with(db, path_part: str) -> dict:
    """The person holding the face of the photo whose path ends with path_part."""
    for p in json.loads(people("list", "--json", "--db", db).stdout):
        shown = json.loads(people("show", p["id"], "--json", "--db", db).stdout)
        if any(f["path"].endswith(path_part) for f in shown["faces"]):
            return shown
    raise AssertionError(f"no person has {path_part}")


@pytest.fixture
def grid_db(beanstalkd, faces_dir, tmp_path):
    db = tmp_path / "faces.db"
    ingest(beanstalkd, faces_dir, tmp_path, db, FIRST, "first")
    made = people("update", "--db", db)
    assert "registry made" in made.stderr, made.stderr
    return db


def test_named_person_keeps_its_name_and_gains_the_new_photos(grid_db, beanstalkd, faces_dir, tmp_path):
    db = grid_db
    obama = person_with(db, "obama/obama.jpg")
    assert sum("/obama/" in f["path"] for f in obama["faces"]) == 4, obama
    people("name", obama["id"], "Barack Obama", "--db", db)
    ids_before = {p["id"]: p["name"] for p in json.loads(people("list", "--json", "--db", db).stdout)}
    ingest(beanstalkd, faces_dir, tmp_path, db, LATER, "later")
    people("update", "--db", db)
    after = json.loads(people("show", "barack obama", "--json", "--db", db).stdout)
    assert after["id"] == obama["id"] and after["name"] == "Barack Obama"
    got = {f["path"].rsplit("/", 1)[1] for f in after["faces"]}
    assert {"obama_720p.jpg", "obama_test1.jpg"} <= got and "kit_with_rose.jpg" not in got, got
    listed = {p["id"]: p["name"] for p in json.loads(people("list", "--json", "--db", db).stdout)}
    assert {k: listed[k] for k in ids_before} == ids_before  # every id and name as it was
    kit = person_with(db, "john1.jpeg")
    assert "kit_with_rose.jpg" in {f["path"].rsplit("/", 1)[1] for f in kit["faces"]}

    found = run_script("search.py", "--person", "Barack Obama", "--db", db, "--out", tmp_path / "m", "--json")
    assert found.returncode == 0, found.stderr[-2000:]
    matches = json.loads(found.stdout)["matches"]
    assert matches and all("/obama/" in m["path"] for m in matches), matches
    assert all(m["person"] == {"id": obama["id"], "name": "Barack Obama"} for m in matches), matches
    assert "Barack Obama" in (tmp_path / "m/report.html").read_text(encoding="utf-8")
    table = run_script("search.py", "--person", str(obama["id"]), "--db", db, "--out", tmp_path / "t")
    assert "Barack Obama" in table.stdout.splitlines()[1], table.stdout
    for who in ("Nobody", "nobody at all"):
        refused = run_script("search.py", "--person", who, "--db", db, "--out", tmp_path / "n")
        assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
        assert "no person" in refused.stderr
    shown = run_script("search.py", "--people", "--db", db, "--out", tmp_path / "who")
    assert shown.returncode == 0 and "registry updated: 0 new face(s)" in shown.stderr, shown.stderr[-2000:]
    folder = tmp_path / "who" / f"person-{obama['id']:03d}"
    assert "Barack Obama" in (tmp_path / "who/index.html").read_text(encoding="utf-8")
    with open(folder / "photos.csv", encoding="utf-8") as f:
        assert {"obama_720p.jpg", "obama_test1.jpg"} <= {
            row.split(",")[3].rsplit("/", 1)[1] for row in f.readlines()[1:]
        }
    people("name", kit["id"], "Barack Obama", "--db", db)
    twice = run_script("search.py", "--person", "Barack Obama", "--db", db, "--out", tmp_path / "n")
    assert twice.returncode == 2 and "2 persons are named" in twice.stderr, twice.stderr


def test_merge_split_and_reject_survive_an_update(grid_db, beanstalkd, faces_dir, tmp_path):
    db = grid_db
    kit, alex = person_with(db, "john1.jpeg"), person_with(db, "alex_lacamoire/img1.jpg")
    people("merge", kit["id"], alex["id"], "--db", db)
    gone = people("show", alex["id"], "--db", db, check=False)
    assert gone.returncode == 2 and "no person" in gone.stderr
    obama = person_with(db, "obama/obama.jpg")
    by_name = {f["path"].rsplit("/", 1)[1]: f"{f['image_id'][:12]}:{f['idx']}" for f in obama["faces"]}
    split = people("split", obama["id"], by_name["obama3.jpg"], "--db", db)
    split_id = int(split.stdout.strip())
    people("reject", obama["id"], by_name["obama2.jpg"], "--db", db)
    ingest(beanstalkd, faces_dir, tmp_path, db, LATER, "later")
    people("update", "--db", db)
    merged = json.loads(people("show", kit["id"], "--json", "--db", db).stdout)
    names = {f["path"].rsplit("/", 1)[1] for f in merged["faces"]}
    assert {"img1.jpg", "alex_lacamoire_test1.jpg", "john1.jpeg", "kit_with_rose.jpg"} <= names, names
    moved = json.loads(people("show", split_id, "--json", "--db", db).stdout)
    assert "obama3.jpg" in [f["path"].rsplit("/", 1)[1] for f in moved["faces"]]
    after = json.loads(people("show", obama["id"], "--json", "--db", db).stdout)
    got = {f["path"].rsplit("/", 1)[1] for f in after["faces"]}
    assert "obama2.jpg" not in got and "obama3.jpg" not in got and "obama_720p.jpg" in got, got
    placed = person_with(db, "obama2.jpg")  # rejected: the update placed it again, never back in obama
    assert placed["id"] != obama["id"]


def test_people_help_says_which_commands_write():
    out = people("--help").stdout
    for verb in ("update", "name", "merge", "split", "reject", "forget"):
        assert any(line.strip().startswith(verb) and "*" in line for line in out.splitlines()), verb
    for verb in ("list", "show"):
        assert not any(line.strip().startswith(verb) and "*" in line for line in out.splitlines()), verb


def test_common_flags_work_after_the_command(tmp_path):
    from facegrid import store

    store.open_db(tmp_path / "empty.db").conn.close()
    empty = people("list", "--db", tmp_path / "empty.db", "-q", "--set", "search.tolerance=0.5", check=False)
    assert empty.returncode == 1 and "the registry is empty" in empty.stderr, empty.stderr
    bad = people("show", "7", "--db", tmp_path / "empty.db", check=False)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "no person" in bad.stderr
