"""search.py --db A --db B: several databases searched as one collection."""

from __future__ import annotations

import json
import shutil
import sqlite3

import pytest
from conftest import run_script

pytestmark = pytest.mark.slow


def split(faces_db, tmp_path):
    """Two databases holding the labelled photos between them: ids 0-7... in one, 8-f... in the other."""
    halves = []
    for name, keep in (("low.db", "01234567"), ("high.db", "89abcdef")):
        db = tmp_path / name
        shutil.copy(faces_db, db)
        conn = sqlite3.connect(db)
        with conn:
            drop = [r[0] for r in conn.execute("SELECT id FROM images") if r[0][0] not in keep]
            for table, key in (("faces", "image_id"), ("annotated", "image_id"), ("images", "id")):
                conn.executemany(f"DELETE FROM {table} WHERE {key} = ?", [(i,) for i in drop])
            conn.execute("UPDATE meta SET value = value || ? WHERE key = 'db_id'", [name])
        conn.close()
        halves.append(db)
    return halves


def search_json(target, out, *dbs):
    args = [a for db in dbs for a in ("--db", str(db))]
    proc = run_script("search.py", str(target), *args, "--out", str(out), "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


def test_two_databases_find_what_one_holding_both_finds(faces_db, faces_dir, tmp_path):
    low, high = split(faces_db, tmp_path)
    target = tmp_path / "target"
    target.mkdir()
    for name in ("obama.jpg", "obama2.jpg"):
        shutil.copy(faces_dir / "people/obama" / name, target / name)
    whole = search_json(target, tmp_path / "whole", faces_db)
    both = search_json(target, tmp_path / "both", low, high)
    assert [m["path"] for m in both["matches"]] == [m["path"] for m in whole["matches"]]
    assert both["search_tolerance"] == whole["search_tolerance"]
    places = {m["database"] for m in both["matches"]}
    assert places == {str(low), str(high)}, places  # matches came from each half
    for m in both["matches"]:
        assert (tmp_path / "both" / m["file"]).read_bytes()[:2] == b"\xff\xd8"  # annotated copy from its own half
    one = search_json(target, tmp_path / "one", low)
    assert {m["path"] for m in one["matches"]} < {m["path"] for m in both["matches"]}


def test_people_over_two_databases_sees_every_face(faces_db, tmp_path):
    low, high = split(faces_db, tmp_path)
    proc = run_script("search.py", "--people", "--db", low, "--db", high, "--out", tmp_path / "people")
    assert proc.returncode == 0, proc.stderr[-2000:]
    conn = sqlite3.connect(faces_db)
    faces = conn.execute("SELECT count(*) FROM faces").fetchone()[0]
    conn.close()
    listed = sum(
        len(p.read_text(encoding="utf-8").splitlines()) - 1 for p in (tmp_path / "people").glob("person-*/photos.csv")
    )
    assert listed == faces


def test_the_same_database_twice_is_refused(faces_db, tmp_path):
    proc = run_script("search.py", "--people", "--db", faces_db, "--db", faces_db, "--out", tmp_path / "p")
    assert proc.returncode == 2
    assert "named twice" in proc.stderr and "Traceback" not in proc.stderr
