"""The edges a sysadmin hits (issue 21): each through the real scripts, a real beanstalkd, real SQLite."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest
from conftest import ROOT, Beanstalkd, db_rows, free_port, run_script, script_cmd, start_script, stored_rows, wait_for


def error_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if " ERROR " in ln or ln.startswith("error:")]


@pytest.fixture
def http_server(tmp_path):
    """A real web server (python -m http.server) on a free port: not a beanstalkd."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def up() -> bool:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
        return False

    try:
        wait_for(up, 30, what="http.server to listen")
        yield f"127.0.0.1:{port}"
    finally:
        proc.kill()
        proc.wait()


# not a beanstalkd server -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "script, args",
    [
        ("queuer.py", ["{tmp}"]),
        ("collector.py", ["--db", "{tmp}/faces.db"]),
        ("filter.py", ["--burst"]),
        ("scripts/status", ["--sample", "0"]),
        ("scripts/buried", ["list"]),
    ],
)
def test_a_web_server_at_the_address_is_one_line_and_exit_3(http_server, tmp_path, script, args):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    proc = run_script(script, "--beanstalkd", http_server, *args, timeout=120)
    assert proc.returncode == 3, proc.stderr
    lines = error_lines(proc.stderr)
    assert len(lines) == 1, proc.stderr
    assert f"{http_server} is not a beanstalkd server" in lines[0] and "--beanstalkd" in lines[0], lines
    assert "Traceback" not in proc.stderr and "AssertionError" not in proc.stderr


class FirstOnly:
    """A TCP front for a real beanstalkd: the first connection is passed through to it, every
    later one is answered as a web server answers. So filter.py's own check at start passes,
    and its workers then meet a server that is not beanstalkd."""

    def __init__(self, target: tuple[str, int]):
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.seen = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.seen += 1
            if self.seen == 1:
                upstream = socket.create_connection(self.target)
                for a, b in ((conn, upstream), (upstream, conn)):
                    threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()
            else:
                with contextlib.suppress(OSError):
                    conn.recv(100)
                    conn.sendall(b"HTTP/1.0 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                conn.close()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := a.recv(65536):
                b.sendall(data)
        with contextlib.suppress(OSError):
            b.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.listener.close()


def test_a_pool_whose_workers_find_no_beanstalkd_ends_with_that_line(beanstalkd):
    front = FirstOnly(("127.0.0.1", beanstalkd.port))
    try:
        proc = run_script("filter.py", "--beanstalkd", front.address, "--workers", "2", "--burst", timeout=120)
    finally:
        front.close()
    assert proc.returncode == 3, proc.stderr
    assert front.seen >= 2  # the start check, then at least one worker
    assert "is not a beanstalkd server" in proc.stderr and "stopping the pool" in proc.stderr, proc.stderr
    assert "restarting" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


# the queuer's record ------------------------------------------------------------------------------
def test_the_queuers_record_does_not_depend_on_the_working_folder(beanstalkd, faces_dir, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("biden.jpg", "biden2.jpg"):
        (photos / name).write_bytes((faces_dir / "people/biden" / name).read_bytes())
    env = dict(os.environ, XDG_STATE_HOME=str(tmp_path / "state"))
    env.pop("FACEGRID_STATE", None)
    runs = []
    for cwd in ("a", "b"):
        (tmp_path / cwd).mkdir()
        runs.append(run_script("queuer.py", "--beanstalkd", beanstalkd.address, photos, cwd=tmp_path / cwd, env=env))
    assert [r.returncode for r in runs] == [0, 0], runs[-1].stderr
    assert "queued=2 unchanged=0" in runs[0].stdout
    assert "queued=0 unchanged=2" in runs[1].stdout, runs[1].stdout
    made = sorted(p.name for p in (tmp_path / "state" / "facegrid").iterdir())
    assert f"queuer-127.0.0.1-{beanstalkd.port}-images.sqlite" in made, made
    assert list((tmp_path / "a").iterdir()) == [] and list((tmp_path / "b").iterdir()) == []
    # another tube is another record: its photos are queued there too
    other = run_script(
        "queuer.py", "--beanstalkd", beanstalkd.address, "--set", "beanstalkd.images_tube=img2", photos, env=env
    )
    assert "queued=2" in other.stdout, other.stderr
    shown = run_script("queuer.py", "--help", env=env)
    assert str(tmp_path / "state" / "facegrid") in shown.stdout.replace("\n", "").replace(" ", ""), shown.stdout


# beanstalkd without -z ----------------------------------------------------------------------------
def test_beanstalkd_without_z_is_refused_unless_small_jobs_are_allowed(faces_dir, tmp_path):
    server = Beanstalkd(tmp_path / "binlog", max_job_size=65_535).start()  # beanstalkd's own default
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("biden.jpg", "biden2.jpg"):
        (photos / name).write_bytes((faces_dir / "people/biden" / name).read_bytes())
    big = [p for p in photos.iterdir() if p.stat().st_size > 65_535]
    try:
        args = ["--beanstalkd", server.address, "--state", tmp_path / "q.sqlite", photos]
        refused = run_script("queuer.py", *args)
        assert refused.returncode == 2, refused.stderr
        lines = error_lines(refused.stderr)
        assert len(lines) == 1 and "-z 16777216" in lines[0] and "--allow-small-jobs" in lines[0], refused.stderr
        assert server.tube("images")["total-jobs"] == 0
        allowed = run_script("queuer.py", *args, "--allow-small-jobs", check=True)
        warned = [ln for ln in allowed.stderr.splitlines() if " WARNING " in ln and "signed" not in ln]
        assert len(warned) == 1 and "-z 16777216" in warned[0], allowed.stderr  # once, not once per photo
        assert f"reencoded={len(big)}" in allowed.stdout and big, allowed.stdout
    finally:
        server.stop()


def test_the_help_of_the_queuer_names_its_options():
    proc = run_script("queuer.py", "--help")
    assert "--allow-small-jobs" in proc.stdout and "queuer-HOST-PORT-TUBE.sqlite" in "".join(proc.stdout.split())
    assert Path(ROOT / "settings.ini").read_text().count("\nstate =\n") == 1


# the collector's database -------------------------------------------------------------------------
NOBODY = 65534


def as_nobody() -> list[str]:
    """A command prefix that drops root, so that chmod really makes a file read-only."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if not setpriv:
        pytest.skip("running as root and setpriv is missing: cannot run the collector as a plain user")
    return [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]


@pytest.fixture
def shared(tmp_path):
    """A folder every user may enter and write (pytest's own tmp folders are root-only)."""
    base = Path(tempfile.mkdtemp(prefix="facegrid-edges-"))
    base.chmod(0o777)
    yield base
    for p in [base, *base.rglob("*")]:
        with contextlib.suppress(OSError):
            p.chmod(0o777 if p.is_dir() else 0o666)
    shutil.rmtree(base, ignore_errors=True)


def collector(beanstalkd, db: Path, *args: str, wait: bool = True, timeout: float = 120):
    cmd = as_nobody() + script_cmd("collector.py", "--beanstalkd", beanstalkd.address, "--db", str(db), *args)
    if wait:
        return subprocess.run(cmd, cwd=db.parent, capture_output=True, text=True, timeout=timeout)
    return subprocess.Popen(cmd, cwd=db.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def put_results(beanstalkd, *ids: str) -> None:
    from test_roles import make_result

    from facegrid import envelope

    with beanstalkd.client(use="people") as c:
        for image_id in ids:
            c.put(envelope.encode_result(make_result(image_id, 1)))


def made_db(beanstalkd, folder: Path) -> Path:
    """A facegrid database with one photo in it, made by the collector as the plain user."""
    db = folder / "faces.db"
    put_results(beanstalkd, "a1" * 32)
    proc = collector(beanstalkd, db, "--burst")
    assert proc.returncode == 0, proc.stderr
    return db


@pytest.mark.slow
def test_a_read_only_database_is_refused_at_start(beanstalkd, shared):
    db = made_db(beanstalkd, shared)
    db.chmod(0o444)
    put_results(beanstalkd, "b2" * 32)
    proc = collector(beanstalkd, db)
    assert proc.returncode == 2, proc.stderr
    lines = error_lines(proc.stderr)
    assert len(lines) == 1 and f"database {db} is read-only for user nobody" in lines[0], proc.stderr
    assert "collector ready" not in proc.stderr and "releasing" not in proc.stderr
    assert beanstalkd.tube("people")["current-jobs-ready"] == 1  # never taken


@pytest.mark.slow
def test_a_read_only_folder_is_named_as_the_cause(beanstalkd, shared):
    ro = shared / "ro"
    ro.mkdir(mode=0o777)
    ro.chmod(0o777)
    db = made_db(beanstalkd, ro)
    db.chmod(0o444)
    ro.chmod(0o555)
    proc = collector(beanstalkd, db)
    assert proc.returncode == 2, proc.stderr
    lines = error_lines(proc.stderr)
    assert len(lines) == 1 and f"database {db} and its folder {ro} are read-only for user nobody" in lines[0]
    assert "unable to open database file" not in proc.stderr
    proc = collector(beanstalkd, ro / "new.db")  # a new database in a folder it may not write
    assert proc.returncode == 2, proc.stderr
    assert f"folder {ro} is read-only for user nobody" in error_lines(proc.stderr)[0], proc.stderr


@pytest.mark.slow
def test_a_database_made_read_only_while_running_ends_the_collector_jobs_released(beanstalkd, shared):
    db = made_db(beanstalkd, shared)
    running = collector(beanstalkd, db, wait=False)
    try:
        wait_for(lambda: beanstalkd.tube("people")["current-watching"] >= 1, what="the collector watching")
        db.chmod(0o444)
        put_results(beanstalkd, "c3" * 32, "d4" * 32)
        out, err = running.communicate(timeout=120)
    finally:
        if running.poll() is None:
            running.kill()
    assert running.returncode == 2, err
    lines = error_lines(err)
    assert len(lines) == 1 and "is read-only for user nobody" in lines[0] and "changed while" in lines[0], err
    people = beanstalkd.tube("people")
    assert (people["current-jobs-ready"], people["current-jobs-delayed"], people["current-jobs-buried"]) == (2, 0, 0)
    assert db_rows(db, "SELECT count(*) FROM images") == [(1,)]


@pytest.mark.slow
def test_a_second_collector_on_the_same_database_refuses_naming_the_first(beanstalkd, tmp_path):
    db = tmp_path / "faces.db"
    first = start_script("collector.py", "--beanstalkd", beanstalkd.address, "--db", db)
    try:
        wait_for(lambda: beanstalkd.tube("people")["current-watching"] >= 1, what="the first collector")
        second = run_script("collector.py", "--beanstalkd", beanstalkd.address, "--db", db, timeout=60)
        assert second.returncode == 2, second.stderr
        lines = error_lines(second.stderr)
        host = socket.gethostname()
        assert len(lines) == 1 and f"in use by the collector on host {host} (pid {first.pid})" in lines[0], lines
        assert beanstalkd.tube("people")["current-watching"] == 1
    finally:
        first.terminate()
        first.communicate(timeout=60)
    assert first.returncode == 0
    again = run_script("collector.py", "--beanstalkd", beanstalkd.address, "--db", db, "--burst", timeout=60)
    assert again.returncode == 0, again.stderr  # the lock went with the first one


# search.py ----------------------------------------------------------------------------------------
def test_a_missing_database_is_a_usage_error(faces_dir, tmp_path):
    photo = faces_dir / "people/obama/obama.jpg"
    proc = run_script("search.py", photo, "--db", tmp_path / "missing.db", "--out", tmp_path / "out")
    assert proc.returncode == 2, proc.stderr
    lines = error_lines(proc.stderr)
    assert len(lines) == 1 and f"database {tmp_path / 'missing.db'} does not exist" in lines[0], proc.stderr
    assert not (tmp_path / "missing.db").exists()


@pytest.mark.slow
def test_one_photo_file_is_a_target_and_copies_keep_their_names(faces_db, faces_dir, tmp_path):
    import json

    photo = tmp_path / "obama.jpg"
    shutil.copy(faces_dir / "people/obama/obama.jpg", photo)
    proc = run_script("search.py", photo, "--db", faces_db, "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = json.loads(proc.stdout)
    out = tmp_path / "matches" / "obama"  # [search] out / the photo's name without its extension
    assert (tmp_path / found["out"]).resolve() == out and found["targets"] == [str(photo)]
    names = {m["file"]: m["path"] for m in found["matches"]}
    assert names and all(
        f == f"{m['rank']:04d}-{Path(m['path']).stem}.jpg" for f, m in zip(names, found["matches"], strict=True)
    ), names
    assert {p.name for p in out.glob("*.jpg")} == set(names)


def test_an_out_folder_inside_the_target_folder_is_refused(faces_db, faces_dir, tmp_path):
    target = tmp_path / "target"
    target.mkdir()
    shutil.copy(faces_dir / "people/obama/obama.jpg", target / "obama.jpg")
    for out in (target / "found", target):
        proc = run_script("search.py", target, "--db", faces_db, "--out", out)
        assert proc.returncode == 2, proc.stderr
        lines = error_lines(proc.stderr)
        assert len(lines) == 1 and "is inside the target folder" in lines[0], proc.stderr
    assert sorted(p.name for p in target.iterdir()) == ["obama.jpg"]


def test_in_a_group_photo_the_matched_face_has_its_own_colour(faces_db, faces_dir, tmp_path):
    import json

    import numpy as np
    from PIL import Image

    from facegrid.imaging import BOX_COLOR, MATCH_COLOR

    proc = run_script(
        "search.py", faces_dir / "people/biden/biden.jpg", "--db", faces_db, "--out", tmp_path / "out", "--json"
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    group = [m for m in json.loads(proc.stdout)["matches"] if m["path"].endswith("groups/obama_and_biden.jpg")]
    assert len(group) == 1, "biden's group photo is not among the matches"
    m = group[0]
    (width,) = db_rows(faces_db, "SELECT width FROM images WHERE id = ?", (m["image_id"],))[0]
    sql = 'SELECT idx, top, "right", bottom, "left" FROM faces WHERE image_id = ?'
    boxes = db_rows(faces_db, sql, (m["image_id"],))
    assert m["file"] == f"{m['rank']:04d}-obama_and_biden.jpg"
    rgb = np.asarray(Image.open(tmp_path / "out" / m["file"]).convert("RGB")).astype(int)
    f = rgb.shape[1] / width

    def share_of(colour, box) -> float:
        """The share of pixels close to colour on a ring just around the face's box."""
        top, right, bottom, left = (round(v * f) for v in box)
        ring = np.concatenate(
            [rgb[max(0, top - 8) : top + 3, left:right], rgb[bottom - 2 : bottom + 8, left:right]]
        ).reshape(-1, 3)
        return float((np.abs(ring - np.array(colour)).sum(axis=1) < 90).mean())

    for idx, *box in boxes:
        if idx == m["face_index"]:
            assert share_of(MATCH_COLOR, box) > 0.2, "the matched face is not boxed in its own colour"
        else:
            assert share_of(MATCH_COLOR, box) < 0.02 and share_of(BOX_COLOR, box) > 0.1, "another face changed colour"


# scripts/buried delete ----------------------------------------------------------------------------
def test_buried_delete_removes_foreign_jobs_and_named_ones_only(beanstalkd):
    from test_roles import make_result

    from facegrid import envelope

    with beanstalkd.client(use="images", watch="images") as c:
        foreign = c.put(b'{"task": "resize", "file": "a.png"}')  # another program's job on our tube
        damaged = c.put(envelope.MAGIC + b"\x00" * 40)  # facegrid's, but broken
        for _ in range(2):
            c.bury(c.reserve(timeout=5))
        ready = c.put(b"another foreign job, ready, not buried")
    with beanstalkd.client(use="people", watch="people") as c:
        ours = c.put(envelope.encode_result(make_result("e5" * 32, 1)))
        c.bury(c.reserve(timeout=5))
    args = ("--beanstalkd", beanstalkd.address)
    refused = run_script("scripts/buried", "delete", "--all", *args)
    assert refused.returncode == 2 and "--all-foreign" in refused.stderr, refused.stderr
    gone = run_script("scripts/buried", "delete", "--all-foreign", *args)
    assert gone.returncode == 0 and "deleted 1 buried job(s) that are not facegrid's; 2 left" in gone.stdout, gone
    with beanstalkd.client() as c:
        assert {j: c.stats_job(j)["state"] for j in (damaged, ours, ready)} == {
            damaged: "buried",
            ours: "buried",
            ready: "ready",
        }
        import greenstalk

        with pytest.raises(greenstalk.NotFoundError):
            c.stats_job(foreign)
    named = run_script("scripts/buried", "delete", "--id", str(damaged), "--id", str(ready), *args)
    assert named.returncode == 0 and "deleted 1 of 2 buried job(s)" in named.stdout, named
    assert beanstalkd.tube("images")["current-jobs-ready"] == 1  # a job that is not buried stays
    assert beanstalkd.tube("people")["current-jobs-buried"] == 1


# scripts/status --problems ------------------------------------------------------------------------
@pytest.mark.slow
def test_status_problems_lists_failed_photos_and_photos_without_a_face(beanstalkd, faces_dir, tmp_path):
    import json

    from conftest import tiny_jpeg

    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(faces_dir / "people/biden/biden.jpg", photos / "biden.jpg")
    (photos / "wall.jpg").write_bytes(tiny_jpeg(7, 200))  # one colour: no face
    (photos / "cut.jpg").write_bytes((faces_dir / "people/obama/obama.jpg").read_bytes()[:3000])  # truncated
    addr = ["--beanstalkd", beanstalkd.address]
    db = tmp_path / "faces.db"
    run_script("queuer.py", *addr, "--state", tmp_path / "q.sqlite", photos, check=True)
    run_script("filter.py", *addr, "--burst", check=True)
    run_script("collector.py", *addr, "--burst", "--db", db, check=True)
    table = run_script("scripts/status", "--problems", "--db", db, "--beanstalkd", "127.0.0.1:1")  # no beanstalkd
    assert table.returncode == 0, table.stderr
    assert "wall.jpg" in table.stdout and "cut.jpg" in table.stdout and "biden.jpg" not in table.stdout
    assert "no face found (model hog" in table.stdout and "1 photo(s) failed, 1 with no face" in table.stdout
    listed = run_script("scripts/status", "--problems", "--json", "--db", db)
    found = {Path(p["path"]).name: p for p in json.loads(listed.stdout)["problems"]}
    assert set(found) == {"wall.jpg", "cut.jpg"}
    assert found["wall.jpg"]["status"] == "no_faces" and found["cut.jpg"]["status"] == "error"
    (stored,) = db_rows(db, "SELECT error FROM images WHERE path LIKE '%cut.jpg'")[0]
    assert stored and found["cut.jpg"]["reason"] == stored
    missing = run_script("scripts/status", "--problems", "--db", tmp_path / "none.db")
    assert missing.returncode == 2 and len(error_lines(missing.stderr)) == 1, missing.stderr


# start-grid.sh, the docs, the env file ------------------------------------------------------------
def sh(script: str, *args, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(ROOT / "scripts" / script), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=kw.pop("cwd", ROOT),
        **kw,
    )


@pytest.mark.parametrize("script", ["start-grid.sh", "stop-grid.sh"])
def test_grid_scripts_help_is_help_text_only(script):
    proc = sh(script, "--help")
    assert proc.returncode == 0, proc.stderr
    header = []
    for line in (ROOT / "scripts" / script).read_text().splitlines()[1:]:
        if not line.startswith("#"):
            break
        header.append(line[2:] if line.startswith("# ") else line[1:])
    assert proc.stdout.splitlines() == header
    assert "set -euo" not in proc.stdout and "root=" not in proc.stdout


@pytest.mark.slow
def test_the_next_steps_start_grid_prints_work_as_pasted(faces_dir, tmp_path):
    from conftest import need_beanstalkd

    need_beanstalkd()
    folder, port = tmp_path / "grid", free_port()
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("obama.jpg", "obama2.jpg"):
        shutil.copy(faces_dir / "people/obama" / name, photos / name)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # a shell as a user has it: no venv on PATH, the state folder of its own
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path), "XDG_STATE_HOME": str(tmp_path / "state")}
    started = sh("start-grid.sh", "--dir", folder, "--port", port, "--workers", "1")
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        steps = {k.strip(): v.strip() for k, _, v in (ln.partition(":") for ln in started.stdout.splitlines()[1:])}
        assert set(steps) >= {"queue photos", "watch it", "problems", "stop it"}, steps

        def pasted(line: str, timeout: float = 300) -> subprocess.CompletedProcess:
            return subprocess.run(
                ["bash", "-c", line], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=timeout
            )

        queued = pasted(steps["queue photos"].replace("PHOTOS/", str(photos)))
        assert queued.returncode == 0 and "queued=2" in queued.stdout, queued.stderr[-2000:]
        db = folder / "facegrid.db"
        wait_for(lambda: stored_rows(db, "SELECT count(*) FROM images") == [(2,)], 300, 0.5, "2 stored")
        status = pasted(steps["watch it"].replace("--watch", "--once --sample 0"))
        assert status.returncode == 0 and "2 photos" in status.stdout, status.stderr
        problems = pasted(steps["problems"])
        assert problems.returncode == 0 and "0 photo(s) failed, 0 with no face" in problems.stdout, problems.stderr
    finally:
        stopped = sh("stop-grid.sh", "--dir", folder, "--timeout", "60", "--force")
    assert started.returncode == 0 and stopped.returncode == 0, stopped.stdout + stopped.stderr


def shell_lines(markdown: str) -> list[str]:
    """The command lines of a document's ```sh blocks."""
    out, inside = [], False
    for line in markdown.splitlines():
        if line.startswith("```"):
            inside = line.strip() == "```sh"
            continue
        if inside and line.strip() and not line.lstrip().startswith("#"):
            out.append(line.split("  #")[0].strip())
    return out


@pytest.mark.parametrize("doc", ["docs/operators.md", "README.md"])
def test_the_documented_commands_run_with_the_venv(doc):
    lines = shell_lines((ROOT / doc).read_text())
    scripts = ("queuer.py", "filter.py", "collector.py", "search.py", "python3 ")
    bare = [ln for ln in lines if ln.startswith(("./", *scripts))]
    assert bare == [], "these would run the first python3 on PATH, without facegrid's packages"
    used = {ln.split()[1] for ln in lines if ln.startswith(".venv/bin/python ")}
    assert used >= {"queuer.py", "search.py"}, used
    for script in used:
        proc = subprocess.run([".venv/bin/python", script, "--help"], cwd=ROOT, capture_output=True, text=True)
        assert proc.returncode == 0 and "usage:" in proc.stdout, proc.stderr


def test_the_env_file_installed_unedited_is_one_consistent_grid():
    env = {}
    for line in (ROOT / "scripts/systemd/facegrid.env.example").read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith("#"):
            env[key.strip()] = value.strip()
    assert env["FACEGRID_BEANSTALKD"] == f"{env['BEANSTALKD_LISTEN']}:{env['BEANSTALKD_PORT']}", env


# the encoder build's progress ---------------------------------------------------------------------
FAKE_BUILD = """
echo "Collecting dlib==20.0.1"; sleep 1.5
echo "  -- Configuring done"; sleep 1.5
echo "  [ 40%] Building CXX object dlib_build/CMakeFiles/dlib.dir/all/source.cpp.o"; sleep 1.5
echo "  [100%] Linking CXX shared module _dlib_pybind11.so"; sleep 1.5
exit 3
"""


@pytest.mark.slow
def test_a_long_build_says_how_long_and_at_which_stage(tmp_path):
    """build-dlib.sh's run_with_progress on a fake slow build (the real one takes ten minutes)."""
    log = tmp_path / "build.log"
    proc = subprocess.run(
        [
            "bash",
            "-c",
            f'. "{ROOT}/scripts/progress.sh"; run_with_progress build-dlib "$1" bash -c "$2"',
            "-",
            log,
            FAKE_BUILD,
        ],
        env=dict(os.environ, FACEGRID_PROGRESS_EVERY="1"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 3  # the command's own exit code
    lines = proc.stderr.splitlines()
    assert len(lines) >= 4 and all(ln.startswith("build-dlib: 0 min ") for ln in lines), lines
    stages = [ln.split(" s, ", 1)[1] for ln in lines]
    want = ["fetching the source", "configuring (cmake)", "compiling, 40% done", "linking"]
    assert [s for i, s in enumerate(stages) if i == 0 or s != stages[i - 1]] == want, stages
    assert "Linking CXX" in log.read_text() and proc.stdout == ""
    build = (ROOT / "scripts/build-dlib.sh").read_text()
    assert "run_with_progress build-dlib" in build and " wheel -v " in build  # CMake's lines reach the log
