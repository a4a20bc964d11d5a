"""Hostile input through the real scripts: every odd file ends as one row that says why.

One module-wide run queues a folder of odd files (tests/oddphotos.py) with
queuer.py, then runs filter.py --burst and collector.py --burst against a private
beanstalkd; most tests below read its database. The walking problems, malformed
job bodies and path tricks get runs of their own.
"""

from __future__ import annotations

import collections
import hashlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
from itertools import combinations
from pathlib import Path

import numpy as np
import oddphotos
import pytest
from conftest import ROOT, Beanstalkd, db_rows, run_script, script_cmd, start_script

from facegrid import envelope
from facegrid.envelope import MAGIC, PREFIX, VERSION, ImageJob, Result

pytestmark = pytest.mark.slow  # starts grids on hostile folders and bodies

NOBODY = 65534
FACE = "people/obama/obama.jpg"
CONTROL = "people/biden/biden.jpg"
NON_UTF8 = b"caf\xe9-\xff.jpg"
BAD_FILES = {  # file name -> what its one-line error must say
    "truncated.jpg": r"truncated",
    "bomb.png": r"decompression bomb",
    "bomb15k.png": r"decompression bomb",
}
NOT_IMAGES = {  # files the queuer never sends -> what its one line says
    "empty.jpg": "file is empty (0 bytes); skipped",
    "notes.jpg": "not an image (it starts with",
}
OUTSIDE_LINKS = ("passwd.jpg", "elsewhere.jpg")  # links to files outside the queued folder
ODD_FORMS = ["cmyk.jpg", "deep16.png", "gray16.png", "gray.jpg", "palette.png", "animated.gif"]
ORIENTATIONS = range(1, 9)


def _as_nobody() -> list[str]:
    """A command prefix that drops root, so that chmod 000 really blocks reads."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if not setpriv:
        pytest.skip("running as root and setpriv is missing: chmod 000 cannot make a file unreadable")
    return [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]


def _shared_tmp(prefix: str) -> Path:
    """A folder every user may enter (pytest's own tmp folders are root-only)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o777)
    return path


def build_odd_folder(folder: Path, faces_dir: Path) -> dict[str, Path | str]:
    face = faces_dir / FACE
    made = {"control.jpg": shutil.copy(faces_dir / CONTROL, folder / "control.jpg")}
    made["empty.jpg"] = oddphotos.empty(folder)
    made["truncated.jpg"] = oddphotos.truncated_jpeg(folder, face)
    made["notes.jpg"] = oddphotos.text_as_jpeg(folder)
    made["bomb.png"] = oddphotos.bomb_png(folder)
    made["bomb15k.png"] = oddphotos.bomb_png(folder, 15_000, "bomb15k.png")  # between max_pixels and 2x
    for fn in (
        oddphotos.cmyk_jpeg,
        oddphotos.png16,
        oddphotos.gray16,
        oddphotos.grayscale,
        oddphotos.palette_transparent,
        oddphotos.animated_gif,
    ):
        p = fn(folder, face)
        made[p.name] = p
    for k in ORIENTATIONS:
        made[f"orient{k}.jpg"] = oddphotos.oriented(folder, face, k)
    made["iphone.heic"] = oddphotos.heic(folder, face)
    oddphotos.not_photos(folder)
    raw = os.path.join(os.fsencode(folder), NON_UTF8)
    oddphotos.unique_copy(face, Path(os.fsdecode(raw)), 1)
    # walking problems: an unreadable file, a folder loop, file link loops
    locked = oddphotos.unique_copy(face, folder / "locked.jpg", 2)
    locked.chmod(0)
    sub = folder / "sub"
    sub.mkdir()
    made["sub/inner.jpg"] = oddphotos.unique_copy(face, sub / "inner.jpg", 3)
    (sub / "loop").symlink_to("..", target_is_directory=True)
    (folder / "ping.jpg").symlink_to("pong.jpg")
    (folder / "pong.jpg").symlink_to("ping.jpg")
    (folder / "self.jpg").symlink_to("self.jpg")
    (folder / "passwd.jpg").symlink_to("/etc/passwd")
    outside = oddphotos.unique_copy(face, folder.parent / "outside.jpg", 4)
    outside.chmod(0o644)
    (folder / "elsewhere.jpg").symlink_to(outside)
    for p in folder.rglob("*"):
        if not p.is_symlink() and p.name != "locked.jpg":
            p.chmod(0o777 if p.is_dir() else 0o644)
    return made


@pytest.fixture(scope="module")
def odd_run(tmp_path_factory, faces_dir):
    prefix = _as_nobody()
    base = _shared_tmp("facegrid-odd-")
    photos = base / "photos"
    photos.mkdir()
    made = build_odd_folder(photos, faces_dir)
    server = Beanstalkd(tmp_path_factory.mktemp("binlog")).start()
    db = tmp_path_factory.mktemp("db") / "faces.db"
    addr = ["--beanstalkd", server.address]
    try:
        q = subprocess.run(
            prefix + script_cmd("queuer.py", *addr, "--state", str(base / "state.sqlite"), str(photos)),
            cwd=ROOT,
            capture_output=True,
            timeout=300,
        )
        f = run_script("filter.py", *addr, "--burst", timeout=600)
        c = run_script("collector.py", *addr, "--burst", "--db", str(db), timeout=300)
        images = server.tube("images")
    finally:
        server.stop(signal.SIGKILL)
    rows = {}
    for row in db_rows(db, "SELECT id, path, status, error, face_count, width, height FROM images"):
        rel = os.path.relpath(row[1], str(photos)) if row[1].startswith(str(photos)) else row[1]
        rows.setdefault(rel, []).append(
            dict(zip(("id", "path", "status", "error", "faces", "width", "height"), row, strict=False))
        )
    yield {
        "queuer": q,
        "filter": f,
        "collector": c,
        "db": db,
        "rows": rows,
        "made": made,
        "photos": photos,
        "images_tube": images,
    }
    shutil.rmtree(base, ignore_errors=True)


def row(run, name: str) -> dict:
    found = run["rows"].get(name)
    assert found, f"{name} is not in the database; stored: {sorted(run['rows'])}\n{run['queuer'].stderr[-2000:]}"
    assert len(found) == 1, f"{name} stored {len(found)} times"
    return found[0]


def face_encodings(db: Path, image_id: str) -> list[np.ndarray]:
    return [
        np.frombuffer(b, dtype="<f4")
        for (b,) in db_rows(db, "SELECT encoding FROM faces WHERE image_id = ? ORDER BY idx", (image_id,))
    ]


# the run as a whole ---------------------------------------------------------------
def test_every_script_went_on_and_exited_0(odd_run):
    for role in ("queuer", "filter", "collector"):
        proc = odd_run[role]
        assert proc.returncode == 0, f"{role} exited {proc.returncode}: {str(proc.stderr)[-2000:]}"
    assert "Traceback" not in odd_run["filter"].stderr
    assert "Traceback" not in odd_run["collector"].stderr
    tube = odd_run["images_tube"]
    assert tube["current-jobs-ready"] == tube["current-jobs-reserved"] == tube["current-jobs-buried"] == 0


def test_each_queued_photo_is_stored_exactly_once(odd_run):
    expected = set(odd_run["made"]) - set(NOT_IMAGES) | {
        os.fsdecode(NON_UTF8).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    }
    assert set(odd_run["rows"]) == expected
    assert all(len(v) == 1 for v in odd_run["rows"].values())
    counts = dict(kv.split("=") for kv in odd_run["queuer"].stdout.decode().split())
    assert int(counts["queued"]) == len(expected)


def test_control_photo_is_unaffected(odd_run):
    r = row(odd_run, "control.jpg")
    assert (r["status"], r["faces"], r["error"]) == ("ok", 1, None)


# files that cannot be photos --------------------------------------------------------
@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_file_is_one_error_row_naming_the_problem(odd_run, name):
    r = row(odd_run, name)
    assert r["status"] == "error" and r["faces"] == 0
    assert r["error"] and "\n" not in r["error"], r["error"]
    assert re.search(BAD_FILES[name], r["error"], re.IGNORECASE), r["error"]


def test_bomb_error_says_how_to_allow_large_photos(odd_run):
    """15000x15000 is over max_pixels but under Pillow's own hard stop: our check names the setting."""
    err = row(odd_run, "bomb15k.png")["error"]
    assert "225000000" in err and "180000000" in err, err


# valid photos in unusual forms ----------------------------------------------------
@pytest.mark.parametrize("name", ODD_FORMS)
def test_odd_form_finds_the_face(odd_run, name):
    r = row(odd_run, name)
    assert (r["status"], r["faces"]) == ("ok", 1), r
    assert (r["width"], r["height"]) == (640, 800)


def test_odd_forms_encode_the_same_face(odd_run):
    ref = face_encodings(odd_run["db"], row(odd_run, "orient1.jpg")["id"])[0]
    for name in ODD_FORMS:
        enc = face_encodings(odd_run["db"], row(odd_run, name)["id"])[0]
        # the same person: well under the 0.5 match tolerance (grayscale loses colour, so not identical)
        assert np.linalg.norm(enc - ref) < 0.3, name


# EXIF orientation ----------------------------------------------------------------
def test_generated_orientations_show_the_same_upright_picture(odd_run):
    views = [np.asarray(oddphotos.upright_view(odd_run["made"][f"orient{k}.jpg"]), dtype=float) for k in ORIENTATIONS]
    for v in views[1:]:
        assert v.shape == views[0].shape
        assert np.abs(v - views[0]).mean() < 3  # JPEG noise only


def test_every_orientation_finds_the_same_face(odd_run):
    db = odd_run["db"]
    encodings, boxes = {}, {}
    for k in ORIENTATIONS:
        r = row(odd_run, f"orient{k}.jpg")
        assert (r["status"], r["faces"], r["width"], r["height"]) == ("ok", 1, 640, 800), (k, r)
        encodings[k] = face_encodings(db, r["id"])[0]
        boxes[k] = db_rows(db, "SELECT top, right, bottom, left FROM faces WHERE image_id = ?", (r["id"],))[0]
    worst = max(np.linalg.norm(encodings[a] - encodings[b]) for a, b in combinations(ORIENTATIONS, 2))
    assert worst < 0.12, f"encodings of the eight orientations differ by up to {worst:.3f}"
    top, right, bottom, left = boxes[1]
    assert 0 <= left < right <= 640 and 0 <= top < bottom <= 800
    for k, box in boxes.items():
        # boxes are in upright pixels: the same place in every file, within a few pixels
        assert max(abs(a - b) for a, b in zip(box, boxes[1], strict=False)) <= 0.06 * (right - left), (k, box, boxes[1])


# walking problems ----------------------------------------------------------------
def _queuer_lines(run, needle: str) -> list[str]:
    return [ln for ln in run["queuer"].stderr.decode("utf-8", "replace").splitlines() if needle in ln]


def test_unreadable_file_is_reported_and_skipped(odd_run):
    lines = _queuer_lines(odd_run, "locked.jpg")
    assert len(lines) == 1 and "Permission denied" in lines[0] and "skipped" in lines[0], lines
    assert "locked.jpg" not in odd_run["rows"]


def test_folder_loop_is_reported_once_and_walked_once(odd_run):
    lines = _queuer_lines(odd_run, "sub/loop")
    assert len(lines) == 1 and "link loop" in lines[0], lines
    row(odd_run, "sub/inner.jpg")  # found once, not once per trip round the loop


@pytest.mark.parametrize("name", ["ping.jpg", "pong.jpg", "self.jpg"])
def test_file_link_loop_is_reported(odd_run, name):
    lines = _queuer_lines(odd_run, f"/{name}:")
    assert len(lines) == 1 and "skipped" in lines[0], lines
    assert name not in odd_run["rows"]


def test_non_utf8_name_is_stored_with_escapes(odd_run):
    shown = "caf\\xe9-\\xff.jpg"
    r = row(odd_run, shown)
    assert (r["status"], r["faces"]) == ("ok", 1)
    assert r["path"].endswith("/" + shown)
    lines = _queuer_lines(odd_run, shown)
    assert len(lines) == 1 and "not UTF-8" in lines[0], lines


def test_queuer_counts_the_skipped_files(odd_run):
    counts = dict(kv.split("=") for kv in odd_run["queuer"].stdout.decode().split())
    # locked.jpg, the folder loop, ping.jpg, pong.jpg, self.jpg, passwd.jpg, elsewhere.jpg
    assert int(counts["unreadable"]) == 7, counts
    assert int(counts["not_image"]) == len(NOT_IMAGES), counts
    # every file left aside by its extension, counted by extension (odd ones as .other)
    expect = collections.Counter(oddphotos.not_photos(Path(tempfile.mkdtemp())).values())
    assert {k: int(v) for k, v in counts.items() if k.startswith("skipped.")} == {
        f"skipped{ext}": n for ext, n in expect.items()
    }, counts
    assert int(counts["skipped"]) == sum(expect.values()), counts


def test_heic_photo_is_read_through_pillow_heif(odd_run, faces_dir):
    made = odd_run["made"]["iphone.heic"]
    assert made.read_bytes()[4:12] == b"ftypheic"  # pillow-heif wrote a real HEIC file
    r = row(odd_run, "iphone.heic")
    assert (r["status"], r["faces"], r["error"]) == ("ok", 1, None), r
    assert (r["width"], r["height"]) == oddphotos.upright(faces_dir / FACE).size


@pytest.mark.parametrize("name", sorted(NOT_IMAGES))
def test_a_file_that_is_not_an_image_never_leaves_the_host(odd_run, name):
    lines = _queuer_lines(odd_run, f"/{name}:")
    assert len(lines) == 1 and NOT_IMAGES[name] in lines[0], lines
    assert name not in odd_run["rows"]


@pytest.mark.parametrize("name", OUTSIDE_LINKS)
def test_a_link_out_of_the_queued_folders_is_reported_and_skipped(odd_run, name):
    lines = _queuer_lines(odd_run, f"/{name}:")
    assert len(lines) == 1 and "points outside the queued folders" in lines[0], lines
    assert name not in odd_run["rows"]
    assert not any(r[0].endswith("/outside.jpg") for r in db_rows(odd_run["db"], "SELECT path FROM images"))
    # nothing with /etc/passwd's bytes or size reached the grid
    size = os.path.getsize("/etc/passwd")
    assert db_rows(odd_run["db"], "SELECT count(*) FROM images WHERE size = ?", (size,)) == [(0,)]


def test_file_deleted_between_walk_and_read(beanstalkd, faces_dir, tmp_path):
    """The walk finds three files; one vanishes before it is read; the other two are queued.

    A real queuer.py with a backlog bound of 1: it puts p0, reads p1 and then waits for
    the tube to drain (it says so in its log). p2 is deleted while it waits, and p0's job
    is taken, so the queuer goes on and finds p2 gone."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(3):
        oddphotos.unique_copy(faces_dir / FACE, folder / f"p{i}.jpg", 10 + i)
    queuer = start_script(
        "queuer.py",
        "--beanstalkd",
        beanstalkd.address,
        "--max-ready",
        "1",
        "--state",
        tmp_path / "state.sqlite",
        folder,
    )
    seen = []
    for line in queuer.stderr:  # the queuer's own log: wait for it to block on the backlog
        seen.append(line)
        if "waiting for the filters" in line:
            break
    else:
        raise AssertionError(f"the queuer never waited on its backlog:\n{''.join(seen)}")
    (folder / "p2.jpg").unlink()
    paths = []
    with beanstalkd.client() as c:
        c.watch("images")
        for _ in range(2):
            job = c.reserve(timeout=60)
            paths.append(os.path.basename(envelope.decode(job.body).path))
            c.delete(job)
    out, err = queuer.communicate(timeout=120)
    assert queuer.returncode == 0, err
    counts = dict(kv.split("=") for kv in out.split())
    assert (counts["queued"], counts["unreadable"]) == ("2", "1"), counts
    lines = [ln for ln in err.splitlines() if "p2.jpg" in ln]
    assert len(lines) == 1 and "No such file" in lines[0], lines
    assert sorted(paths) == ["p0.jpg", "p1.jpg"]


def test_queuer_in_a_read_only_folder_says_so_in_one_line(faces_dir, tmp_path):
    prefix = _as_nobody()
    base = _shared_tmp("facegrid-rowork-")
    try:
        photos = base / "photos"
        photos.mkdir()
        oddphotos.unique_copy(faces_dir / FACE, photos / "a.jpg", 40).chmod(0o644)
        photos.chmod(0o755)
        work = base / "work"
        work.mkdir()
        work.chmod(0o555)  # root-owned: the queuer (nobody) may not write its state file here
        if not prefix:
            pytest.skip("not root: cannot make a folder this user may not write")
        # the default record lives in the user's state folder: make that one read-only too
        env = dict(os.environ, XDG_STATE_HOME=str(work))
        proc = subprocess.run(
            prefix + script_cmd("queuer.py", "--beanstalkd", "127.0.0.1:1", str(photos)),
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 2, proc.stderr
        lines = [ln for ln in proc.stderr.strip().splitlines() if "ERROR" in ln]
        assert len(lines) == 1 and f"{work}/facegrid" in lines[0] and "--state" in lines[0], proc.stderr
        assert "Traceback" not in proc.stderr
        assert list(work.iterdir()) == []
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_two_queuers_on_one_state_file_the_second_stops_at_once(beanstalkd, faces_dir, tmp_path):
    import fcntl

    photos = tmp_path / "photos"
    photos.mkdir()
    oddphotos.unique_copy(faces_dir / FACE, photos / "a.jpg", 41)
    state = tmp_path / "state.sqlite"
    with open(str(state) + ".lock", "w") as held:  # what a running queuer holds
        fcntl.flock(held, fcntl.LOCK_EX)
        proc = run_script("queuer.py", "--beanstalkd", beanstalkd.address, "--state", state, photos, timeout=60)
    assert proc.returncode == 1, proc.stderr
    lines = [ln for ln in proc.stderr.strip().splitlines() if "ERROR" in ln]
    assert len(lines) == 1 and "another queuer is using this state file" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert beanstalkd.tube("images")["total-jobs"] == 0
    again = run_script("queuer.py", "--beanstalkd", beanstalkd.address, "--state", state, photos, check=True)
    assert "queued=1" in again.stdout


# malformed job bodies ---------------------------------------------------------------
def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _with_prefix(raw: bytes, version: int = VERSION, magic: bytes = MAGIC, hlen: int | None = None) -> bytes:
    return PREFIX.pack(magic, version, len(raw) if hlen is None else hlen) + raw


def malformed_bodies() -> dict[str, bytes]:
    job = envelope.encode_image_job(
        ImageJob(id=_sha("x"), path="/p/x.jpg", host="h", size=3, mtime=0.0, queued_at=0.0, image=b"abc")
    )
    _, _, hlen = PREFIX.unpack_from(job)
    header = job[PREFIX.size : PREFIX.size + hlen]
    bad_id = envelope.encode_result(
        Result(id=_sha("y"), path="/p/y.jpg", host="h", size=1, mtime=0.0, queued_at=0.0, status="error", error="e")
    )
    return {
        "random": os.urandom(700),
        "wrong-magic": job.replace(MAGIC, b"GIF8", 1),
        "version-9": _with_prefix(header + b"abc", version=9),
        "header-longer": _with_prefix(header + b"abc", hlen=hlen + 50),
        "header-shorter": _with_prefix(header + b"abc", hlen=hlen - 5),
        "blob-lies": job + b"trailing",
        "huge-header": _with_prefix(b'{"kind":"image","pad":"' + b"x" * (5 << 20) + b'","blobs":[]}'),
        "id-not-sha256": bad_id.replace(_sha("y").encode(), b"../../etc/passwd".ljust(64, b"/"), 1),
    }


def test_malformed_bodies_in_both_tubes_are_buried_and_good_jobs_stored(beanstalkd, faces_dir, tmp_path):
    bad = malformed_bodies()
    result_body = envelope.encode_result(
        envelope.error_result(
            ImageJob(id=_sha("r"), path="/p/r.jpg", host="h", size=1, mtime=0.0, queued_at=0.0), "misplaced"
        )
    )
    folder = tmp_path / "photos"
    folder.mkdir()
    addr = ["--beanstalkd", beanstalkd.address]
    with beanstalkd.client() as c:
        c.use("images")
        for body in list(bad.values())[:4]:
            c.put(body, priority=1024)
        oddphotos.unique_copy(faces_dir / FACE, folder / "good1.jpg", 21)
        run_script("queuer.py", *addr, "--state", str(tmp_path / "s.sqlite"), str(folder), check=True)
        for body in list(bad.values())[4:] + [result_body]:
            c.put(body, priority=1024)
        c.use("people")
        for body in bad.values():
            c.put(body)
        c.put(
            envelope.encode_image_job(
                ImageJob(
                    id=hashlib.sha256(b"x").hexdigest(),
                    path="/p/i.jpg",
                    host="h",
                    size=1,
                    mtime=0.0,
                    queued_at=0.0,
                    image=b"x",
                )
            )
        )
    oddphotos.unique_copy(faces_dir / FACE, folder / "good2.jpg", 22)
    run_script("queuer.py", *addr, "--state", str(tmp_path / "s.sqlite"), str(folder), check=True)
    db = tmp_path / "faces.db"
    f = run_script("filter.py", *addr, "--burst", timeout=600)
    c = run_script("collector.py", *addr, "--burst", "--db", str(db), timeout=300)
    assert f.returncode == 0 and c.returncode == 0, (f.stderr[-2000:], c.stderr[-2000:])
    n = len(bad) + 1
    assert beanstalkd.tube("images")["current-jobs-buried"] == n
    assert beanstalkd.tube("people")["current-jobs-buried"] == n
    assert sorted(os.path.basename(p) for (p,) in db_rows(db, "SELECT path FROM images")) == ["good1.jpg", "good2.jpg"]
    assert db_rows(db, "SELECT DISTINCT status FROM images") == [("ok",)]
    for proc, what in ((f, "bad image job"), (c, "bad result job")):
        lines = [ln for ln in proc.stderr.splitlines() if "burying job" in ln]
        assert len(lines) == n and all(what in ln for ln in lines), lines
        assert "Traceback" not in proc.stderr
    log = f.stderr + c.stderr
    for reason in (
        "wrong magic",
        "version 9 is not supported",
        "header declares",
        "not UTF-8 JSON",
        "blob lengths add up",
        "over the 1048576-byte limit",
        "not a lowercase hex sha256",
        "a result job sits on the images tube",
        "an image job sits on the people tube",
    ):
        assert reason in log, reason


# names from jobs never become file names --------------------------------------------
def _snapshot(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def test_job_provided_paths_are_only_text(beanstalkd, faces_dir, tmp_path):
    """A result claiming path ../../etc/x is stored as text; no file is made from it, by any role."""
    addr = ["--beanstalkd", beanstalkd.address]
    photos, target = tmp_path / "photos", tmp_path / "target"
    work = tmp_path / "a" / "b" / "work"
    scratch = tmp_path / "scratch"
    for d in (photos, target, work, scratch):
        d.mkdir(parents=True)
    oddphotos.unique_copy(faces_dir / FACE, photos / "real.jpg", 31)
    shutil.copy(faces_dir / "people/obama/obama2.jpg", target / "obama2.jpg")
    run_script("queuer.py", *addr, "--state", str(tmp_path / "s.sqlite"), str(photos), check=True)
    run_script("filter.py", *addr, "--burst", check=True, timeout=600)
    with beanstalkd.client() as c:  # forge a result from the real one: same face, hostile names
        c.watch("people")
        c.use("people")
        job = c.reserve(timeout=10)
        real = envelope.decode(job.body)
        evil_id = _sha("evil")
        forged = Result(**{**real.__dict__, "id": evil_id, "path": "../../etc/x", "host": "../../tmp/h"})
        c.put(envelope.encode_result(forged))
        c.release(job)
    env = dict(os.environ, TMPDIR=str(scratch))
    before = _snapshot(tmp_path)
    run_script("collector.py", *addr, "--burst", "--db", "faces.db", cwd=work, env=env, check=True)
    s = run_script(
        "search.py",
        str(target),
        "--db",
        "faces.db",
        "--out",
        str(tmp_path / "out"),
        "--json",
        cwd=work,
        env=env,
        timeout=300,
    )
    assert s.returncode == 0, s.stderr[-2000:]
    assert db_rows(work / "faces.db", "SELECT path, host FROM images WHERE id = ?", (evil_id,)) == [
        ("../../etc/x", "../../tmp/h")
    ]
    new = _snapshot(tmp_path) - before
    allowed = re.compile(
        r"^(a/b/work/faces\.db(-wal|-shm|-collector\.lock|\.index(/.*)?)?|out(/(\d{4}-[\w.-]+\.jpg"
        r"|report\.csv|report\.html|\.facegrid-written))?)$"
    )
    assert [p for p in new if not allowed.match(p)] == []
    assert not (tmp_path / "a" / "etc").exists() and not (tmp_path / "etc").exists()
    assert list(scratch.iterdir()) == []
    outs = sorted(p.name for p in (tmp_path / "out").glob("*.jpg"))
    assert "0001-x.jpg" in outs or "0002-x.jpg" in outs, outs  # "../../etc/x": its last part, nothing more
