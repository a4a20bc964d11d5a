"""The edges a sysadmin hits (issue 21): each through the real scripts, a real beanstalkd, real SQLite."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import ROOT, Beanstalkd, free_port, run_script, wait_for


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
