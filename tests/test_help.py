"""Every script explains itself: --help exits 0 and shows examples."""

import pytest
from conftest import ROOT, run_script

SCRIPTS = ["queuer.py", "filter.py", "collector.py", "search.py"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_exits_0_with_examples(script):
    proc = run_script(script, "--help", timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "examples:" in proc.stdout and "exit codes:" in proc.stdout
    assert "--beanstalkd" in proc.stdout and "--config" in proc.stdout


PY_TOOLS = [
    p.name
    for p in sorted((ROOT / "scripts").iterdir())
    if p.is_file() and p.read_text(errors="replace").startswith("#!/usr/bin/env python")
]


@pytest.mark.parametrize("script", PY_TOOLS)
def test_python_tools_in_scripts_help_exits_0(script):
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / script), "--help"], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr
    assert "usage" in proc.stdout.lower()


@pytest.mark.parametrize(
    "script, args, code, needle",
    [
        ("filter.py", ["--workers", "many"], 2, "filter.workers = 'many' is not allowed"),
        ("queuer.py", ["/no/such/folder"], 2, "/no/such/folder: not a folder"),
        ("search.py", ["/no/such/folder"], 2, "/no/such/folder: no such photo or folder"),
        ("collector.py", ["--config", "/no/such.ini"], 2, "config file /no/such.ini does not exist"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(script, args, code, needle):
    proc = run_script(script, *args, timeout=60)
    assert proc.returncode == code, proc.stderr
    assert needle in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unreachable_beanstalkd_is_exit_3():
    from conftest import free_port

    proc = run_script("collector.py", "--beanstalkd", f"127.0.0.1:{free_port()}", "--db", "/tmp/x.db", timeout=60)
    assert proc.returncode == 3, proc.stderr
    assert "cannot reach beanstalkd" in proc.stderr and "Traceback" not in proc.stderr
