"""Target photos (facegrid/targets.py): the main face of a photo with several, and a second scan for a
photo where no face was found. Real photos through the filter's real pipeline."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from facegrid import targets
from facegrid.errors import UsageError
from facegrid.faces import FaceEngine
from facegrid.settings import Filter


@pytest.fixture(scope="module")
def engine() -> FaceEngine:
    return FaceEngine(Filter())


def read(faces_dir, rel: str) -> bytes:
    return (faces_dir / rel).read_bytes()


def test_the_main_face_is_the_clearly_largest_and_most_central():
    big_centre, small_edge = (40, 160, 160, 40), (0, 30, 30, 0)  # top, right, bottom, left in a 200x200 photo
    assert targets.main_face([small_edge, big_centre], 200, 200) == 1
    same_size = (40, 100, 100, 40), (100, 180, 160, 120)
    assert targets.main_face(list(same_size), 200, 200) is None  # neither clearly the largest
    big_edge, small_centre = (0, 120, 120, 0), (80, 120, 120, 80)
    assert targets.main_face([big_edge, small_centre], 200, 200) is None  # the largest is not the central one


def test_a_group_photo_gives_its_main_face_or_is_left_out(engine, faces_dir):
    kit = engine.analyse(read(faces_dir, "people/kit_harington/john1.jpeg")).encodings[0]
    rose = engine.analyse(
        read(faces_dir, "people/rose_leslie/" + sorted((faces_dir / "people/rose_leslie").iterdir())[0].name)
    ).encodings[0]
    t, why = targets.encode_target(engine, "kit_with_rose.jpg", read(faces_dir, "groups/kit_with_rose.jpg"))
    assert t is not None and t.picked and "2 faces found; the largest" in why
    assert np.linalg.norm(t.encoding - kit) < 0.5 < np.linalg.norm(t.encoding - rose)
    t, why = targets.encode_target(engine, "two_people.jpg", read(faces_dir, "groups/two_people.jpg"))
    assert t is None and "2 faces found and none is the main one" in why
    alone, why = targets.encode_target(engine, "john1.jpeg", read(faces_dir, "people/kit_harington/john1.jpeg"))
    assert alone is not None and not alone.picked and why == ""


def test_a_picked_face_that_is_someone_else_is_left_out(engine, faces_dir, caplog):
    photos = [
        (
            "rose.jpg",
            read(faces_dir, "people/rose_leslie/" + sorted((faces_dir / "people/rose_leslie").iterdir())[0].name),
        ),
        ("kit_with_rose.jpg", read(faces_dir, "groups/kit_with_rose.jpg")),  # its main face is Kit's
    ]
    got = targets.encode_photos(engine, photos, "target/", mixed_distance=0.65)
    assert [t.path for t in got] == ["rose.jpg"]
    assert "kit_with_rose.jpg: its main face is not the person of the other photos" in caplog.text
    kit_photos = [("john1.jpeg", read(faces_dir, "people/kit_harington/john1.jpeg")), photos[1]]
    assert [t.path for t in targets.encode_photos(engine, kit_photos, "target/", 0.65)] == [
        "john1.jpeg",
        "kit_with_rose.jpg",
    ]
    with pytest.raises(UsageError, match="no photo with one clear face"):
        targets.encode_photos(engine, [("two.jpg", read(faces_dir, "groups/two_people.jpg"))], "target/", 0.65)


def test_a_small_face_is_found_by_a_second_scan_at_twice_the_size(engine, faces_dir):
    data = read(faces_dir, "people/obama/obama.jpg")
    full = engine.analyse(data)
    photo = Image.open(io.BytesIO(data)).convert("RGB")
    width = max(1, round(photo.width * 20 / (full.boxes[0][1] - full.boxes[0][3])))  # a face about 20 px wide
    out = io.BytesIO()
    photo.resize((width, round(photo.height * width / photo.width)), Image.LANCZOS).save(out, "JPEG", quality=95)
    small = out.getvalue()
    assert not engine.analyse(small).boxes  # too small for the usual scan
    t, why = targets.encode_target(engine, "small.jpg", small)
    assert t is not None and why == ""
    assert np.linalg.norm(t.encoding - full.encodings[0]) < 0.5
    big = FaceEngine(Filter(detect_max_side=0))
    assert targets.retry_upsample(big, big.analyse(data)) is None  # a large photo: no second, larger scan
