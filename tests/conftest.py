"""Shared fixtures: a real beanstalkd on a free port, the labelled photos, the scripts.

Nothing here mocks the queue or the database: every test that needs beanstalkd
gets its own server process with its own binlog folder.
"""

from __future__ import annotations

import contextlib
import csv
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import localgrid
import pytest
from webserver import CHROMIUM_ARGS

ROOT = Path(__file__).resolve().parent.parent
FACES = Path(os.environ.get("FACEGRID_FACES", ROOT.parent / "shared" / "faces"))
free_port = localgrid.free_port


Beanstalkd = localgrid.Server  # the project's own launcher, shared with scripts/bench.py and scripts/evaluate.py


IN_CI = os.environ.get("CI", "").lower() == "true"


def missing(why: str) -> None:
    """A test input that is not there: a skip on a developer's machine, a failure in CI (CI=true),
    where a run that skipped the tests that need it must not pass."""
    if IN_CI:
        pytest.fail(f"{why} (CI=true: the run must have it)", pytrace=False)
    pytest.skip(why)


def need_beanstalkd() -> None:
    if not (shutil.which("beanstalkd") or Path("/usr/bin/beanstalkd").exists()):
        missing("beanstalkd is not installed; scripts/setup.sh installs it")


@pytest.fixture
def beanstalkd(tmp_path):
    need_beanstalkd()
    server = Beanstalkd(tmp_path / "binlog").start()
    yield server
    server.stop(signal.SIGKILL)


@pytest.fixture(scope="session")
def faces_dir() -> Path:
    if not (FACES / "labels.csv").exists():
        missing(
            f"labelled photos not found at {FACES}; put the shared/ folder beside the repository or set FACEGRID_FACES"
        )
    return FACES


@pytest.fixture(scope="session")
def labels(faces_dir) -> dict[str, dict]:
    with open(faces_dir / "labels.csv", newline="") as f:
        return {
            row["path"]: {"faces": int(row["faces"]), "identities": row["identities"].split(";")}
            for row in csv.DictReader(f)
        }


@pytest.fixture(scope="session")
def labelled_grid(faces_dir, tmp_path_factory):
    """Every labelled photo through the whole grid, once per test run: the real queuer, a
    filter with 2 workers and a collector running beside it, in burst mode. Its beanstalkd
    stays up for the session (tests may queue again); its database is faces_db."""
    need_beanstalkd()
    tmp = tmp_path_factory.mktemp("grid")
    server = Beanstalkd(tmp / "binlog").start()
    addr = ["--beanstalkd", server.address]
    db = tmp / "faces.db"
    try:
        q = run_script("queuer.py", *addr, "--state", tmp / "q.sqlite", faces_dir, check=True)
        collector = start_script("collector.py", *addr, "--db", db, "--burst")
        f = run_script("filter.py", *addr, "--workers", "2", "--burst", check=True, timeout=900)
        out, err = collector.communicate(timeout=300)
        assert collector.returncode == 0, err
        yield {"db": db, "tmp": tmp, "server": server, "addr": addr, "queuer": q, "filter": f}
    finally:
        server.stop()


@pytest.fixture(scope="session")
def faces_db(labelled_grid) -> Path:
    """A database of every labelled photo, made once by the real queuer, filter and collector.

    Read-only for tests: copy it first if a test must write.
    """
    return labelled_grid["db"]


CHROMIUM_FLAGS = (*CHROMIUM_ARGS, "--hide-scrollbars")  # the web tests' flags (tests/webserver.py)
IMAGE_PROBE = """<!DOCTYPE html><html><body><iframe id="f" src="%s" style="width:1200px;height:900px"></iframe>
<pre id="result">pending</pre><script>
document.getElementById("f").addEventListener("load", function () {
  var imgs = Array.from(this.contentDocument.images);
  function check() {
    if (imgs.some(function (i) { return !i.complete; })) { return setTimeout(check, 50); }
    document.getElementById("result").textContent = "RESULT" + JSON.stringify(imgs.map(function (i) {
      return {width: i.naturalWidth, alt: i.alt}; })) + "END";
  }
  check();
});
</script></body></html>"""


@pytest.fixture
def chromium(tmp_path):
    """render(html_path) -> [{"width", "alt"}] for every <img> once loaded, in headless Chromium."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if not exe:
        pytest.skip("chromium is not installed (apt-get install chromium); cannot render the HTML")

    def render(page: Path) -> list[dict]:
        import json
        import re

        probe = Path(page).parent / "_image_probe.html"
        probe.write_text(IMAGE_PROBE % Path(page).name)
        try:
            proc = subprocess.run(
                [
                    exe,
                    *CHROMIUM_FLAGS,
                    f"--user-data-dir={tmp_path / 'chromium'}",
                    "--allow-file-access-from-files",
                    "--virtual-time-budget=20000",
                    "--dump-dom",
                    probe.resolve().as_uri(),
                ],
                capture_output=True,
                text=True,
                timeout=180,
            )
        finally:
            probe.unlink()
        found = re.search(r"RESULT(.*)END", proc.stdout)
        assert found, f"chromium gave no result (exit {proc.returncode}): {proc.stderr[-1500:]}"
        return json.loads(found.group(1))

    return render


def script_cmd(name: str, *args: object) -> list[str]:
    """A Python script runs under this interpreter; a shell shim (scripts/status) runs as users run it."""
    if name.endswith(".py"):
        return [sys.executable, str(ROOT / name), *map(str, args)]
    return [str(ROOT / name), *map(str, args)]


def run_script(
    name: str, *args: object, timeout: float = 300, check: bool = False, **kw
) -> subprocess.CompletedProcess:
    """Run queuer.py / filter.py / collector.py / search.py to completion."""
    proc = subprocess.run(
        script_cmd(name, *args), cwd=kw.pop("cwd", ROOT), capture_output=True, text=True, timeout=timeout, **kw
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{name} {' '.join(map(str, args))} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return proc


def start_script(name: str, *args: object, **kw) -> subprocess.Popen:
    """Start a script in the background; stderr goes to a file the test can read."""
    return subprocess.Popen(
        script_cmd(name, *args),
        cwd=kw.pop("cwd", ROOT),
        stdout=kw.pop("stdout", subprocess.PIPE),
        stderr=kw.pop("stderr", subprocess.PIPE),
        text=True,
        **kw,
    )


def wait_for(predicate, timeout: float = 60, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def children(pid: int) -> list[int]:
    """The pids of a process's children (from /proc); [] once it has gone."""
    out = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:  # the process has gone
        return []
    for task in tasks:
        with contextlib.suppress(OSError):
            out += [int(c) for c in (task / "children").read_text().split()]
    return out


def tiny_jpeg(shade: int = 0, side: int = 16) -> bytes:
    """A real JPEG of one colour, for results made by hand (decode checks every blob)."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (side, side), (shade % 256, 90, 160)).save(buf, "JPEG")
    return buf.getvalue()


def stored_rows(db_path: Path, sql: str, params=()) -> list[tuple] | None:
    """db_rows for a database a role may still be creating: None until its file and tables exist
    (a collector opens the file before its schema is committed)."""
    import sqlite3

    if not db_path.exists():
        return None
    try:
        return db_rows(db_path, sql, params)
    except sqlite3.OperationalError as e:
        if "no such table" in str(e):
            return None
        raise


def db_rows(db_path: Path, sql: str, params=()) -> list[tuple]:
    import sqlite3

    conn = sqlite3.connect(str(db_path))
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()
