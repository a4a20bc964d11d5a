"""A virtual environment with the prebuilt dlib-bin wheel, beside the project's .venv.

What users of face_recognition have: scripts/bench.py runs face_recognition's
defaults in it, and scripts/encoder_reference.py makes the reference encodings
the fast build is checked against (tests/test_encoder.py). It lives in the cache
folder ($FACEGRID_CACHE, else $XDG_CACHE_HOME/facegrid, else ~/.cache/facegrid)
and is made once, with pip, in about a minute.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from deps import lists

_DEPS = lists()
DLIB_BIN = _DEPS["dlib-bin"][0]
# What face_recognition's users install, at the versions of pyproject.toml, and pillow-heif and yuface,
# which the filter's pipeline imports at its defaults (the bench runs that pipeline in this venv too).
PACKAGES = [
    p
    for p in _DEPS["runtime"]
    if re.split(r"[=<>!~;\s\[]", p, maxsplit=1)[0].lower()
    in {
        "setuptools",
        "numpy",
        "pillow",
        "opencv-python-headless",
        "face_recognition_models",
        "click",
        "pillow-heif",
        "yuface",
    }
] + [DLIB_BIN]
NO_DEPS = _DEPS["no-deps"]


def cache_dir() -> Path:
    env = os.environ.get("FACEGRID_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "facegrid"


def python() -> Path:
    """The dlib-bin venv's interpreter, made on first use."""
    venv = cache_dir() / "venv-dlib-bin"
    py = venv / "bin" / "python"
    stamp = venv / ".facegrid-baseline"
    want = " ".join(PACKAGES + NO_DEPS)
    if py.exists() and stamp.exists() and stamp.read_text() == want:
        return py
    print(f"baseline: making a venv with {DLIB_BIN} in {venv} (once, about a minute)", file=sys.stderr, flush=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    pip = [str(py), "-m", "pip", "--disable-pip-version-check", "-q", "install"]
    subprocess.run([*pip, *PACKAGES], check=True, stdout=subprocess.DEVNULL)
    subprocess.run([*pip, "--no-deps", *NO_DEPS], check=True, stdout=subprocess.DEVNULL)
    check = "import dlib, sys; sys.exit(1 if dlib.DLIB_USE_BLAS else 0)"
    subprocess.run([str(py), "-c", check], check=True)
    stamp.write_text(want)
    return py
