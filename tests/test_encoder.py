"""The encoder build: the fast dlib must see faces exactly as the dlib-bin wheel does.

tests/data/encodings-dlib-bin.json holds the boxes and encodings of the labelled
photos made with the dlib-bin wheel (scripts/encoder_reference.py remakes it in a
venv of its own). Stored encodings from hosts on either build must stay comparable.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

from facegrid import imaging
from facegrid.faces import FaceEngine
from facegrid.settings import Filter

pytestmark = pytest.mark.slow  # compares with the dlib-bin wheel's interpreter, photo by photo

REFERENCE = Path(__file__).parent / "data" / "encodings-dlib-bin.json"
TOLERANCE = 1e-4  # Euclidean distance; matches are judged at 0.5


@pytest.fixture(scope="module")
def engine() -> FaceEngine:
    return FaceEngine(Filter())


@pytest.fixture(scope="module")
def reference(faces_dir) -> list[dict]:
    photos = json.loads(REFERENCE.read_text())["photos"]
    for p in photos:
        data = (faces_dir / p["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == p["sha256"], (
            f"{p['path']} differs from the photo the reference was made from; "
            "remake it with scripts/encoder_reference.py"
        )
        p["data"] = data
    return photos


def unpack(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<f4")


def test_reference_covers_every_labelled_face(reference, labels):
    assert {p["path"] for p in reference} == set(labels)
    assert sum(len(p["boxes"]) for p in reference) == sum(v["faces"] for v in labels.values())


def test_boxes_match_the_dlib_bin_wheel(engine, reference):
    for p in reference:
        got = engine.analyse(p["data"]).boxes
        assert [list(b) for b in got] == p["boxes"], p["path"]


def test_encodings_within_1e4_of_the_dlib_bin_wheel(engine, reference):
    worst = 0.0
    for p in reference:
        rgb = imaging.decode(p["data"], engine.work_side(), engine.conf.max_pixels).rgb
        got = engine.encode(rgb, [tuple(b) for b in p["boxes"]])
        want = [unpack(e) for e in p["encodings"]]
        assert len(got) == len(want), p["path"]
        for g, w in zip(got, want, strict=False):
            d = float(np.linalg.norm(g.astype(np.float64) - w))
            assert d < TOLERANCE, f"{p['path']}: encoding {d:.2e} from dlib-bin's"
            worst = max(worst, d)
    print(f"largest distance from dlib-bin's encodings: {worst:.1e} ({engine.describe()})")


def test_engine_is_face_recognition(engine, faces_dir):
    """The engine loads dlib's models itself; its boxes and encodings are face_recognition's."""
    face_recognition = pytest.importorskip("face_recognition")
    for path in ("groups/obama_and_biden.jpg", "people/obama/obama_small.jpg"):
        rgb = imaging.decode((faces_dir / path).read_bytes(), 1024, engine.conf.max_pixels).rgb
        want = face_recognition.face_locations(rgb, number_of_times_to_upsample=1)
        assert engine.face_locations(rgb, 1, "hog") == want
        theirs = face_recognition.face_encodings(rgb, known_face_locations=want)
        ours = engine.encode(rgb, want)
        assert len(ours) == len(theirs) > 0
        for a, b in zip(ours, theirs, strict=False):
            assert np.linalg.norm(a - b) < 1e-6


def test_ci_runs_the_fast_encoder(engine):
    """CI (CI=true) must test the build a filter host set up by scripts/setup.sh runs."""
    if os.environ.get("CI", "").lower() not in ("1", "true", "yes"):
        pytest.skip("only under CI=true: elsewhere the dlib-bin wheel is allowed")
    assert engine.build["blas"], (
        f"CI runs {engine.describe()}: scripts/setup.sh did not install the "
        "fast encoder; see the cache folder's dlib-build.log"
    )
