"""scripts/start-grid.sh and scripts/stop-grid.sh for real, and the systemd units."""

from __future__ import annotations

import configparser
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest
from conftest import ROOT, free_port, need_beanstalkd, run_script, wait_for

pytestmark = pytest.mark.slow
NAMES = ("beanstalkd", "filter", "collector")


def sh(script: str, *args, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(ROOT / "scripts" / script), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def stored(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return conn.execute("SELECT count(*) FROM images").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error:  # not created yet
        return 0


@pytest.fixture
def grid(tmp_path):
    need_beanstalkd()
    folder, port = tmp_path / "grid", free_port()
    yield folder, port
    sh("stop-grid.sh", "--dir", folder, "--timeout", "30", "--force")  # never leave a grid behind


def start(folder, port, *extra):
    proc = sh("start-grid.sh", "--dir", folder, "--port", port, *extra)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return {n: int((folder / f"{n}.pid").read_text()) for n in NAMES}


def queue(port, folder, photos):
    run_script(
        "queuer.py",
        "--beanstalkd",
        f"127.0.0.1:{port}",
        "--state",
        folder / "queuer.sqlite",
        "--requeue",
        photos,
        check=True,
    )


def test_start_process_stop(grid, faces_dir):
    folder, port = grid
    pids = start(folder, port, "--workers", "2")
    assert all(alive(p) for p in pids.values())
    again = sh("start-grid.sh", "--dir", folder, "--port", port)
    assert again.returncode == 2 and "already running" in again.stderr
    photos = faces_dir / "people/obama"
    queue(port, folder, photos)
    db = folder / "facegrid.db"
    n = len([p for p in photos.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png")])
    wait_for(lambda: stored(db) == n, 600, interval=0.5, what=f"{n} obama photos stored")
    stop = sh("stop-grid.sh", "--dir", folder)
    assert stop.returncode == 0, stop.stdout + stop.stderr
    for name in NAMES:
        assert f"{name}: stopped" in stop.stdout
        assert not (folder / f"{name}.pid").exists()
    assert "(exiting)" in (folder / "logs/filter.log").read_text()
    assert "(exiting)" in (folder / "logs/collector.log").read_text()
    wait_for(lambda: not any(alive(p) for p in pids.values()), 30, what="every process gone")
    twice = sh("stop-grid.sh", "--dir", folder)
    assert twice.returncode == 0 and "no pid file" in twice.stdout


def test_stop_mid_run_loses_nothing(grid, faces_dir, labels):
    """Stop while photos are queued and in work; start again on the same binlog; all get stored."""
    folder, port = grid
    start(folder, port)
    queue(port, folder, faces_dir)
    db = folder / "facegrid.db"
    wait_for(lambda: stored(db) >= 1, 600, interval=0.2, what="a first photo stored")
    stop = sh("stop-grid.sh", "--dir", folder)
    assert stop.returncode == 0, stop.stdout
    done = stored(db)
    assert done < len(labels)  # stopped mid-run: the rest waits in beanstalkd's binlog
    start(folder, port)
    wait_for(lambda: stored(db) == len(labels), 600, interval=0.5, what="every labelled photo stored")
    rows = (
        sqlite3.connect(db).execute("SELECT count(*), count(DISTINCT path) FROM images WHERE status = 'ok'").fetchone()
    )
    assert rows == (len(labels), len(labels))
    assert sh("stop-grid.sh", "--dir", folder).returncode == 0


def test_bad_arguments(tmp_path):
    assert sh("stop-grid.sh", "--dir", tmp_path / "nope").returncode == 2
    assert sh("start-grid.sh", "--bogus").returncode == 2
    assert sh("start-grid.sh", "--port", "abc", "--dir", tmp_path / "g").returncode == 2
    assert sh("start-grid.sh", "--help").returncode == 0


def test_stale_pid_file_is_reported(tmp_path):
    folder = tmp_path / "g"
    folder.mkdir()
    dead = subprocess.Popen(["true"])
    dead.wait()
    (folder / "collector.pid").write_text(str(dead.pid))
    proc = sh("stop-grid.sh", "--dir", folder)
    assert proc.returncode == 0 and "collector: was not running" in proc.stdout


UNITS = ROOT / "scripts/systemd"


def unit(name: str) -> configparser.ConfigParser:
    cp = configparser.ConfigParser(strict=False, interpolation=None)
    cp.optionxform = str  # type: ignore[assignment,method-assign]  # keep the keys' case
    cp.read(UNITS / name)
    return cp


def test_systemd_units():
    names = sorted(p.name for p in UNITS.glob("*.service"))
    assert names == [
        "facegrid-beanstalkd.service",
        "facegrid-collector.service",
        "facegrid-filter.service",
        "facegrid-queuer-watch@.service",
        "facegrid-queuer@.service",
        "facegrid-web.service",
    ]
    for name in names:
        s = unit(name)["Service"]
        assert s["EnvironmentFile"].lstrip("-") == "/etc/facegrid/facegrid.env"
        if name != "facegrid-queuer@.service":
            assert s["Restart"] == "on-failure"
    for name in ("facegrid-filter.service", "facegrid-collector.service"):
        s = unit(name)["Service"]
        assert (s["KillSignal"], s["KillMode"]) == ("SIGTERM", "mixed")
        assert int(s["TimeoutStopSec"]) >= 120  # the default TTR: a photo in work may finish
        assert "$FACEGRID_BEANSTALKD" in s["ExecStart"]
    env = (UNITS / "facegrid.env.example").read_text()
    assert "FACEGRID_BEANSTALKD=" in env
    verify = shutil.which("systemd-analyze")
    if verify:
        proc = subprocess.run([verify, "verify", *[str(UNITS / n) for n in names]], capture_output=True, text=True)
        assert "Unknown key" not in proc.stderr and "Invalid" not in proc.stderr, proc.stderr


def test_start_grid_on_a_busy_port_starts_nothing(beanstalkd, tmp_path):
    """Another program's server on the port: exit 2 and one line; no filter or collector joins that server."""
    folder = tmp_path / "grid"
    proc = sh("start-grid.sh", "--dir", folder, "--port", beanstalkd.port)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "already in use" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "grid up" not in proc.stdout
    assert not any((folder / f"{name}.pid").exists() for name in NAMES)
    assert beanstalkd.tube("images")["current-watching"] == 0
    assert beanstalkd.tube("people")["current-watching"] == 0
