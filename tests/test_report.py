"""report.html and search.py --export, on a database made by the real pipeline."""

from __future__ import annotations

import csv
import hashlib
import html
import re
import shutil
import sqlite3

import pytest
from conftest import run_script

pytestmark = pytest.mark.slow
HOSTILE = '/photos/<script>alert("x")</script>&amp; o\'brien.jpg'


def search(db, target_dir, out, *extra):
    return run_script("search.py", target_dir, "--db", db, "--out", out, *extra)


@pytest.fixture(scope="module")
def obama_report(faces_db, faces_dir, tmp_path_factory):
    work = tmp_path_factory.mktemp("report")
    target = work / "target"
    target.mkdir()
    shutil.copy(faces_dir / "people/obama/obama.jpg", target / "obama.jpg")
    out = work / "out"
    proc = search(faces_db, target, out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


def csv_rows(out):
    with open(out / "report.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_report_lists_every_match_best_first(obama_report, labels):
    page = (obama_report / "report.html").read_text(encoding="utf-8")
    rows = csv_rows(obama_report)
    assert len(rows) >= 10
    distances = [float(d) for d in re.findall(r'class="dist">distance ([0-9.]+)<', page)]
    assert len(distances) == len(rows)
    assert distances == sorted(distances)
    for row in rows:
        assert html.escape(row["path"]) in page
        assert f'href="{row["file"]}"' in page
        assert (obama_report / row["file"]).is_file()
    # every match is a photo labelled with this person
    for row in rows:
        rel = row["path"].split("/faces/", 1)[1]
        assert "obama" in labels[rel]["identities"], rel
    assert "target/obama.jpg" in page.split("<main>")[0]  # the target named in the header


def test_report_is_self_contained(obama_report):
    page = (obama_report / "report.html").read_text(encoding="utf-8")
    srcs = re.findall(r'src="([^"]*)"', page)
    assert srcs and all(s.startswith("data:image/jpeg;base64,") for s in srcs)
    for href in re.findall(r'href="([^"]*)"', page):
        assert "/" not in href and ":" not in href, href
    assert "http://" not in page and "https://" not in page
    assert "<script" not in page
    # thumbnails are small: the whole page stays well under the sum of the copies
    copies = sum(p.stat().st_size for p in obama_report.glob("*.jpg"))
    assert (obama_report / "report.html").stat().st_size < copies


def test_every_image_loads_in_chromium(obama_report, chromium):
    page = (obama_report / "report.html").read_text(encoding="utf-8")
    images = chromium(obama_report / "report.html")
    assert len(images) == page.count("<img ")
    assert len(images) == 1 + 2 * len(csv_rows(obama_report))  # target crop, then crop + thumbnail per match
    broken = [i for i in images if i["width"] <= 0]
    assert not broken, broken


def test_paths_are_escaped(faces_db, faces_dir, tmp_path):
    db = tmp_path / "hostile.db"
    shutil.copy(faces_db, db)
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("UPDATE images SET path = ?, host = ? WHERE path LIKE '%obama_720p.jpg'", [HOSTILE, "<b>host</b>"])
    conn.close()
    target = tmp_path / "t"
    target.mkdir()
    shutil.copy(faces_dir / "people/obama/obama.jpg", target)
    proc = search(db, target, tmp_path / "out")
    assert proc.returncode == 0, proc.stderr[-2000:]
    page = (tmp_path / "out/report.html").read_text(encoding="utf-8")
    assert html.escape(HOSTILE) in page
    assert "<script>" not in page and "<b>host</b>" not in page
    assert "&lt;b&gt;host&lt;/b&gt;" in page


def test_no_match_still_writes_a_report(faces_db, faces_dir, tmp_path):
    target = tmp_path / "t"
    target.mkdir()
    shutil.copy(faces_dir / "people/obama/obama.jpg", target)
    proc = search(faces_db, target, tmp_path / "out", "--tolerance", "0.01")
    assert proc.returncode == 1, proc.stderr[-2000:]
    page = (tmp_path / "out/report.html").read_text(encoding="utf-8")
    assert "0 matches" in page and "No stored face is within the tolerance" in page
    assert page.count("<img ") == 1  # the target's own crop


def test_export_one_and_all(faces_db, tmp_path):
    conn = sqlite3.connect(faces_db)
    ids = [r[0] for r in conn.execute("SELECT image_id FROM annotated ORDER BY image_id")]
    conn.close()
    one = run_script("search.py", "--export", tmp_path / "one", "--db", faces_db, "--id", ids[0][:12])
    assert one.returncode == 0, one.stderr
    assert [p.name for p in (tmp_path / "one").iterdir()] == [f"{ids[0]}.jpg"]
    every = run_script("search.py", "--export", tmp_path / "all", "--db", faces_db)
    assert every.returncode == 0, every.stderr
    files = sorted(p.name for p in (tmp_path / "all").iterdir())
    assert files == sorted(f"{i}.jpg" for i in ids)
    data = (tmp_path / "all" / files[0]).read_bytes()
    conn = sqlite3.connect(faces_db)
    stored = conn.execute("SELECT jpeg FROM annotated WHERE image_id = ?", [ids[0]]).fetchone()[0]
    conn.close()
    assert hashlib.sha256(data).digest() == hashlib.sha256(stored).digest()


def test_export_refuses_unknown_ids(faces_db, tmp_path):
    bad = run_script("search.py", "--export", tmp_path / "x", "--db", faces_db, "--id", "0" * 64)
    assert bad.returncode == 2
    assert "no stored photo has this id" in bad.stderr
    junk = run_script("search.py", "--export", tmp_path / "x", "--db", faces_db, "--id", "../../etc")
    assert junk.returncode == 2
    assert not (tmp_path / "x").exists() or not any((tmp_path / "x").iterdir())


def test_modes_are_exclusive(faces_db, tmp_path):
    proc = run_script("search.py", "--people", "--export", tmp_path, "--db", faces_db)
    assert proc.returncode == 2
    assert "exactly one of" in proc.stderr
