"""scripts/evaluate.py on a slice of lfw-dev through the real grid, and target folders
that show two people."""

from __future__ import annotations

import csv
import json
import os
import shutil
import sqlite3
from pathlib import Path

import pytest
from conftest import ROOT, missing, need_beanstalkd, run_script

LFW = Path(os.environ.get("FACEGRID_LFW", ROOT.parent / "shared" / "lfw-dev"))  # as scripts/bench.py
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def lfw_slice(tmp_path_factory):
    if not (LFW / "labels.csv").exists():
        missing(f"lfw-dev not found at {LFW}; put the shared/ folder beside the repository or set FACEGRID_LFW")
    need_beanstalkd()
    work = tmp_path_factory.mktemp("evaluate")
    proc = run_script(
        "scripts/evaluate.py",
        str(LFW),
        "--limit",
        "300",
        "--sizes",
        "100,all",
        "--work",
        work,
        "--json",
        "--calibrate",
        "--curve",
        work / "curve.png",
        timeout=1200,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return work, json.loads(proc.stdout.strip().splitlines()[-1]), proc.stdout


def test_evaluation_counts_every_relevant_photo(lfw_slice):
    work, figures, stdout = lfw_slice
    with open(LFW / "labels.csv", newline="") as f:
        identity = {r["path"]: r["identity"] for r in csv.DictReader(f)}
    con = sqlite3.connect(work / "gallery.db")
    stored = [p for (p,) in con.execute("SELECT path FROM images")]
    assert 250 <= len(stored) == figures["photos"]
    per_person: dict[str, int] = {}
    for path in stored:
        who = identity[path[path.index("photos/") :]]
        per_person[who] = per_person.get(who, 0) + 1
    full = figures["sizes"][str(len(stored))]
    # every person with 3+ photos is searched; all but their two target photos are relevant
    assert full["searches"] == sum(1 for n in per_person.values() if n >= 3)
    assert full["tp"] + full["fn"] == sum(n - 2 for n in per_person.values() if n >= 3)
    assert 0 < full["precision"] <= 1 and 0 < full["recall"] <= 1
    assert figures["sizes"]["100"]["searches"] < full["searches"]
    # every miss has one reason, and "no face found" is never more than the database's faceless photos
    for size in figures["sizes"].values():
        for part in ("crowded", "rest", "all"):
            assert sum(size[part]["misses"].values()) == size[part]["fn"], size[part]
            assert min(size[part]["misses"].values()) >= 0, size[part]
    faceless = {p for (p,) in con.execute("SELECT path FROM images WHERE id NOT IN (SELECT image_id FROM faces)")}
    by_person: dict[str, list[str]] = {}
    for path in sorted(stored):
        by_person.setdefault(identity[path[path.index("photos/") :]], []).append(path)
    relevant_faceless = sum(len(set(ps[2:]) & faceless) for ps in by_person.values() if len(ps) >= 3)
    assert full["all"]["misses"]["no_face"] <= relevant_faceless


def test_evaluation_reports_people_curve_and_calibration(lfw_slice):
    work, figures, stdout = lfw_slice
    assert "BCubed" in stdout and "CALIBRATION = (" in stdout
    assert figures["people"]["faces"] > 200
    assert 0.8 <= figures["people"]["bcubed_f"] <= 1.0, figures["people"]
    table = figures["calibration"]
    assert all(a[1] >= b[1] for a, b in zip(table, table[1:], strict=False)), table
    assert (work / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_evaluate_without_labels_says_so(tmp_path):
    proc = run_script("scripts/evaluate.py", str(tmp_path))
    assert proc.returncode == 2
    assert "labels.csv not found" in proc.stderr and "Traceback" not in proc.stderr


def test_target_folder_with_two_people_is_refused(faces_db, faces_dir, tmp_path):
    target = tmp_path / "target"
    target.mkdir()
    for rel in ("people/obama/obama.jpg", "people/obama/obama2.jpg", "people/biden/biden.jpg"):
        shutil.copy(faces_dir / rel, target / Path(rel).name)
    proc = run_script("search.py", target, "--db", faces_db, "--out", tmp_path / "out")
    assert proc.returncode == 2, proc.stderr[-2000:]
    line = proc.stderr.strip().splitlines()[-1]
    assert "2 different people" in line and "obama.jpg, obama2.jpg | biden.jpg" in line, line
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()
    # the same folder without the stranger searches as before
    (target / "biden.jpg").unlink()
    proc = run_script("search.py", target, "--db", faces_db, "--out", tmp_path / "out", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = json.loads(proc.stdout)
    assert found["matches"] and all("/people/biden/" not in m["path"] for m in found["matches"])
    assert all(m["score"] <= 1 and m["confidence"] in ("strong", "likely", "weak") for m in found["matches"])
    assert found["search_tolerance"] <= found["tolerance"]
