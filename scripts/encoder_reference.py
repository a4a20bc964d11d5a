#!/usr/bin/env python3
"""Reference boxes and encodings of the labelled photos, made with the dlib-bin wheel.

tests/test_encoder.py checks that the dlib this project runs (the fast build from
scripts/build-dlib.sh) finds the same boxes and makes encodings within 1e-4 of
these, so faces stored by either build can be searched together.

The script runs itself in a venv with dlib-bin (scripts/baseline.py makes it once
in the cache folder) and writes tests/data/encodings-dlib-bin.json: for each
labelled photo its sha256, the boxes in the working image's pixels and each
encoding as base64 of 128 little-endian float32.

examples:
  scripts/encoder_reference.py             remake the file (needs ../shared/faces)
  scripts/encoder_reference.py --check     compare this venv's dlib with the file
"""

from __future__ import annotations

import argparse
import base64
import csv
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FACES = Path(os.environ.get("FACEGRID_FACES", ROOT.parent / "shared" / "faces"))
OUT = ROOT / "tests" / "data" / "encodings-dlib-bin.json"


def make() -> dict:
    import numpy as np

    from facegrid.faces import FaceEngine
    from facegrid.settings import Filter

    engine = FaceEngine(Filter())
    if engine.build["blas"]:
        raise SystemExit("encoder_reference.py: this dlib is not the dlib-bin wheel; run without --inner")
    photos = []
    with open(FACES / "labels.csv", newline="") as f:
        for row in csv.DictReader(f):
            data = (FACES / row["path"]).read_bytes()
            a = engine.analyse(data)
            photos.append(
                {
                    "path": row["path"],
                    "sha256": hashlib.sha256(data).hexdigest(),
                    "boxes": [list(b) for b in a.boxes],
                    "encodings": [base64.b64encode(np.asarray(e, "<f4").tobytes()).decode() for e in a.encodings],
                }
            )
    b = engine.build
    return {
        "made_by": "scripts/encoder_reference.py",
        "dlib": f"{b['version']} {b['dist']}",
        "settings": "facegrid.settings.Filter() defaults",
        "photos": photos,
    }


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--check", action="store_true", help="compare this venv's dlib with the file")
    p.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if not (FACES / "labels.csv").exists():
        print(f"encoder_reference.py: labelled photos not found at {FACES}; set FACEGRID_FACES", file=sys.stderr)
        return 2
    if args.check:
        return subprocess.call(
            [sys.executable, "-m", "pytest", "-q", str(ROOT / "tests" / "test_encoder.py")], cwd=ROOT
        )
    if args.inner:
        json.dump(make(), sys.stdout)
        return 0
    import baseline  # beside this script

    out = subprocess.run(
        [str(baseline.python()), __file__, "--inner"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},  # the dlib-bin venv loads this checkout's package
    )
    if out.returncode:
        print(out.stderr[-2000:], file=sys.stderr)
        return 1
    doc = json.loads(out.stdout)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    head = {k: v for k, v in doc.items() if k != "photos"}
    photos = ",\n  ".join(json.dumps(p) for p in doc["photos"])  # one photo per line
    OUT.write_text(json.dumps(head, indent=1)[:-2] + f',\n "photos": [\n  {photos}\n ]\n}}\n')
    faces = sum(len(p["boxes"]) for p in doc["photos"])
    print(f"wrote {OUT.relative_to(ROOT)}: {len(doc['photos'])} photos, {faces} faces, dlib {doc['dlib']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
