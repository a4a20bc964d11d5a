"""search.py never writes where it should not, and hostile stored text cannot fool its output.

All through the real search.py on a database the real grid made (faces_db).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import secrets
import shutil
import sqlite3
import subprocess
import tempfile
from pathlib import Path

import pytest
from conftest import run_script, script_cmd

pytestmark = pytest.mark.slow
NOBODY = 65534
EVIL_PATH = '=HYPERLINK("http://evil.example/x")\x1b[2J\x1b]0;owned\x07.jpg'


def search(db, target, out, *extra, **kw):
    return run_script("search.py", str(target), "--db", str(db), "--out", str(out), *extra, **kw)


@pytest.fixture
def target(faces_dir, tmp_path) -> Path:
    folder = tmp_path / "target"
    folder.mkdir()
    shutil.copy(faces_dir / "people/obama/obama.jpg", folder / "obama.jpg")
    return folder


def db_copy(faces_db, dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(faces_db, dest)
    return dest


def matched(out: Path) -> list[str]:
    with open(out / "report.csv", newline="", encoding="utf-8") as f:
        return [row["path"] for row in csv.DictReader(f)]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# a database that is not facegrid's -----------------------------------------------------------
def test_a_database_that_is_not_facegrids_is_refused_and_left_untouched(beanstalkd, target, tmp_path):
    other = tmp_path / "notes.sqlite"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)")
    conn.execute("INSERT INTO notes (text) VALUES ('my notes')")
    conn.commit()
    conn.close()
    text = tmp_path / "text.db"
    text.write_text("not a database at all\n" * 100)
    before = {p: digest(p) for p in (other, text)}
    for db in (other, text):
        for args in ((str(target),), ("--people",)):
            proc = run_script("search.py", *args, "--db", db, "--out", tmp_path / "out")
            assert proc.returncode == 2, proc.stderr
            assert "not a facegrid database" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    proc = run_script("collector.py", "--db", other, "--burst", "--beanstalkd", beanstalkd.address)
    assert proc.returncode == 2 and "not a facegrid database" in proc.stderr, proc.stderr
    assert {p: digest(p) for p in (other, text)} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "binlog",
        "notes.sqlite",
        "target",
        "text.db",
    ]  # no -wal, no index
    conn = sqlite3.connect(other)
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    conn.close()


def test_search_does_not_change_the_database(faces_db, target, tmp_path):
    db = db_copy(faces_db, tmp_path / "db" / "faces.db")
    before = digest(db)
    proc = search(db, target, tmp_path / "out")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert digest(db) == before
    wal = Path(str(db) + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0  # SQLite's own reader files at most, empty


# a read-only copy ---------------------------------------------------------------------------
def _as_nobody() -> list[str]:
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if not setpriv:
        pytest.skip("running as root and setpriv is missing: cannot run search.py as a user without write access")
    return [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]


def test_search_works_on_a_read_only_copy(faces_db, faces_dir):
    """A copy in a folder the user may not write: the index goes to the user's cache folder."""
    prefix = _as_nobody()
    base = Path(tempfile.mkdtemp(prefix="facegrid-ro-"))
    try:
        base.chmod(0o755)
        ro = base / "readonly"
        ro.mkdir()
        db = db_copy(faces_db, ro / "faces.db")
        db.chmod(0o444)
        ro.chmod(0o555)  # root-owned: nobody may not write here
        mine = base / "mine"
        mine.mkdir()
        mine.chmod(0o777)
        tgt = mine / "target"
        tgt.mkdir()
        shutil.copy(faces_dir / "people/obama/obama.jpg", tgt / "obama.jpg")
        for p in (tgt, tgt / "obama.jpg"):
            p.chmod(0o755 if p.is_dir() else 0o644)
        env = dict(os.environ, XDG_CACHE_HOME=str(mine / "cache"), HOME=str(mine))
        proc = subprocess.run(
            prefix + script_cmd("search.py", str(tgt), "--db", str(db), "--out", str(mine / "out")),
            cwd=mine,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert matched(mine / "out"), "no match on the read-only copy"
        assert sorted(p.name for p in ro.iterdir()) == ["faces.db"]
        assert list((mine / "cache" / "facegrid" / "index").glob("faces.db-*.index/manifest.json"))
    finally:
        for p in base.rglob("*"):
            if p.is_dir():
                p.chmod(0o755)
        base.chmod(0o755)
        shutil.rmtree(base, ignore_errors=True)


# the index belongs to one database ------------------------------------------------------------
def test_the_index_is_not_reused_for_another_database_with_the_same_generation(faces_db, target, tmp_path):
    here = tmp_path / "db" / "faces.db"
    db_copy(faces_db, here)
    first = search(here, target, tmp_path / "out1")
    assert first.returncode == 0, first.stderr[-2000:]
    # another database, same generation, at the same path: obama's faces there carry biden's encoding
    other = db_copy(faces_db, tmp_path / "other" / "faces.db")
    conn = sqlite3.connect(other)
    with conn:
        biden = conn.execute(
            "SELECT f.encoding FROM faces f JOIN images i ON i.id = f.image_id WHERE i.path LIKE '%/biden/biden.jpg'"
        ).fetchone()[0]
        conn.execute(
            "UPDATE faces SET encoding = ? WHERE image_id IN (SELECT id FROM images WHERE path LIKE '%/obama/%')",
            [biden],
        )
        conn.execute("UPDATE meta SET value = ? WHERE key = 'db_id'", [secrets.token_hex(16)])
        gens = {conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()[0]}
    conn.close()
    fresh = search(other, target, tmp_path / "fresh")
    shutil.copy(other, here)
    second = search(here, target, tmp_path / "out2")
    assert second.returncode == fresh.returncode, second.stderr[-2000:]
    assert sorted(matched(tmp_path / "out2")) == sorted(matched(tmp_path / "fresh"))
    assert sorted(matched(tmp_path / "out2")) != sorted(matched(tmp_path / "out1"))  # the stale index would say so
    conn = sqlite3.connect(faces_db)
    assert gens == {conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()[0]}
    conn.close()
    meta = json.loads((Path(str(here) + ".index") / "manifest.json").read_text())
    conn = sqlite3.connect(here)
    assert meta["db_id"] == conn.execute("SELECT value FROM meta WHERE key = 'db_id'").fetchone()[0]
    conn.close()


# stored blobs that do not decode ------------------------------------------------------------
def test_a_stored_blob_that_is_not_a_jpeg_is_skipped_and_named(faces_db, target, tmp_path):
    db = db_copy(faces_db, tmp_path / "db" / "faces.db")
    conn = sqlite3.connect(db)
    with conn:
        image_id, path = conn.execute("SELECT id, path FROM images WHERE path LIKE '%/obama/obama2.jpg'").fetchone()
        conn.execute("UPDATE annotated SET jpeg = ? WHERE image_id = ?", [b"GIF89a" + bytes(500), image_id])
    conn.close()
    proc = search(db, target, tmp_path / "out")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    named = [ln for ln in proc.stderr.splitlines() if "not a readable JPEG" in ln]
    assert named and all(path in ln or image_id in ln for ln in named), named
    assert path in matched(tmp_path / "out")  # still a match, listed without a copy
    assert not list((tmp_path / "out").glob("[0-9][0-9][0-9][0-9]-obama2.jpg"))  # the copy keeps its name
    people = run_script("search.py", "--people", "--db", db, "--out", tmp_path / "people")
    assert people.returncode == 0 and "Traceback" not in people.stderr, people.stderr[-2000:]
    assert any(path in ln and "not a readable JPEG" in ln for ln in people.stderr.splitlines())
    export = run_script("search.py", "--export", tmp_path / "export", "--db", db)
    assert export.returncode == 0 and "Traceback" not in export.stderr, export.stderr[-2000:]
    assert any(image_id in ln and "not a readable JPEG" in ln for ln in export.stderr.splitlines())
    assert not (tmp_path / "export" / f"{image_id}.jpg").exists() and any((tmp_path / "export").glob("*.jpg"))


# hostile stored text ----------------------------------------------------------------------------
def test_terminal_escapes_and_formulas_in_stored_paths_are_neutralised(faces_db, target, tmp_path):
    db = db_copy(faces_db, tmp_path / "db" / "faces.db")
    conn = sqlite3.connect(db)
    with conn:
        conn.execute(
            "UPDATE images SET path = ?, host = ? WHERE path LIKE '%/obama/obama2.jpg'", [EVIL_PATH, "@SUM(1+1)"]
        )
    conn.close()
    proc = search(db, target, tmp_path / "out")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "\x1b" not in proc.stdout and "\x07" not in proc.stdout
    assert "\\x1b[2J" in proc.stdout
    with open(tmp_path / "out" / "report.csv", newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if "HYPERLINK" in r["path"]]
    assert len(rows) == 1 and rows[0]["path"].startswith("'=") and rows[0]["host"] == "'@SUM(1+1)", rows
    assert "\x1b" not in rows[0]["path"]
    people = run_script("search.py", "--people", "--db", db, "--out", tmp_path / "people")
    assert people.returncode == 0, people.stderr[-2000:]
    cells = []
    for p in (tmp_path / "people").glob("person-*/photos.csv"):
        with open(p, newline="", encoding="utf-8") as f:
            cells += [r for r in csv.DictReader(f) if "HYPERLINK" in r["path"]]
    assert cells and all(
        r["path"].startswith("'=") and "\x1b" not in r["path"] and r["host"] == "'@SUM(1+1)" for r in cells
    ), cells


# --out ---------------------------------------------------------------------------------------
def test_a_second_search_into_the_same_out_leaves_only_its_own_files(faces_db, target, tmp_path):
    out = tmp_path / "out"
    (out / "person-001-mine").mkdir(parents=True)
    (out / "person-001-mine" / "keep.jpg").write_bytes(b"mine")
    (out / "notes.txt").write_text("mine")
    (out / "0001-0123456789abcdef.jpg").write_bytes(b"mine too, though it looks like a copy")
    first = search(faces_db, target, out)
    assert first.returncode == 0, first.stderr[-2000:]
    copies = {p.name for p in out.glob("[0-9][0-9][0-9][0-9]-*.jpg")} - {"0001-0123456789abcdef.jpg"}
    assert copies
    second = search(faces_db, target, out, "--tolerance", "0.01")
    assert second.returncode == 1
    assert matched(out) == []
    assert {p.name for p in out.glob("[0-9][0-9][0-9][0-9]-*.jpg")} == {"0001-0123456789abcdef.jpg"}
    assert (out / "person-001-mine" / "keep.jpg").read_bytes() == b"mine"
    assert (out / "notes.txt").read_text() == "mine"


def test_people_deletes_nothing_it_did_not_write(faces_db, tmp_path):
    faces_db = db_copy(faces_db, tmp_path / "db" / "faces.db")  # --people writes the people registry
    out = tmp_path / "people"
    (out / "person-001-mine").mkdir(parents=True)
    (out / "person-001-mine" / "keep.jpg").write_bytes(b"mine")
    for _ in range(2):
        proc = run_script("search.py", "--people", "--db", faces_db, "--out", out)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert (out / "person-001-mine" / "keep.jpg").read_bytes() == b"mine"
    made = sorted(p.name for p in out.glob("person-[0-9][0-9][0-9]"))
    assert made and all(any((out / name).glob("face-*.jpg")) for name in made)
    # a person-NNN folder the user made (not recorded by the last run) is never filled or removed
    fresh = tmp_path / "fresh"
    (fresh / "person-001").mkdir(parents=True)
    (fresh / "person-001" / "mine.jpg").write_bytes(b"mine")
    proc = run_script("search.py", "--people", "--db", faces_db, "--out", fresh)
    assert proc.returncode == 2 and "person-001" in proc.stderr and "another --out" in proc.stderr, proc.stderr
    assert sorted(p.name for p in (fresh / "person-001").iterdir()) == ["mine.jpg"]
