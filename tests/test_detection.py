"""Detection settings: upsampling only photos up to filter.upsample_max_side."""

from __future__ import annotations

import dataclasses

import pytest

from facegrid.errors import ConfigError
from facegrid.faces import FaceEngine
from facegrid.settings import Filter, load


@pytest.fixture(scope="module")
def engine() -> FaceEngine:
    return FaceEngine(Filter())


def test_small_photos_are_upsampled_as_by_default(engine, faces_dir):
    data = (faces_dir / "people/obama/obama_small.jpg").read_bytes()  # 320x240
    default = engine.analyse(data)
    engine.conf = dataclasses.replace(Filter(), upsample_max_side=1024)
    try:
        limited = engine.analyse(data)
    finally:
        engine.conf = Filter()
    assert default.upsample == limited.upsample == 1
    assert limited.boxes == default.boxes and len(limited.boxes) == 1


def test_larger_photos_skip_the_upsampling(engine, faces_dir):
    data = (faces_dir / "people/obama/obama_1080p.jpg").read_bytes()  # 1920x1080
    engine.conf = dataclasses.replace(Filter(), upsample_max_side=1024)
    try:
        limited = engine.analyse(data)
    finally:
        engine.conf = Filter()
    assert limited.upsample == 0
    assert engine.analyse(data).upsample == 1
    assert len(limited.boxes) == 1  # a face this large needs no upsampling


def test_upsample_max_side_is_checked(tmp_path):
    ini = tmp_path / "s.ini"
    ini.write_text("[filter]\nupsample_max_side = -5\n")
    with pytest.raises(ConfigError, match="upsample_max_side"):
        load(ini)
    assert load(ini, {"filter.upsample_max_side": "800"}).filter.upsample_max_side == 800


# -- filter.proposals = yuface: HOG only around libfacedetection's candidates -------------------
def _same_face(a, b) -> bool:
    """Each box's centre inside the other, sizes within 2x (as scripts/bench.py counts faces)."""
    (t1, r1, b1, l1), (t2, r2, b2, l2) = a, b
    cy1, cx1, cy2, cx2 = (t1 + b1) / 2, (l1 + r1) / 2, (t2 + b2) / 2, (l2 + r2) / 2
    return (
        t2 <= cy1 <= b2 and l2 <= cx1 <= r2 and t1 <= cy2 <= b1 and l1 <= cx2 <= r1 and 0.5 < (b1 - t1) / (b2 - t2) < 2
    )


@pytest.fixture(scope="module")
def candidates_engine() -> FaceEngine:
    pytest.importorskip("yuface", reason="setup.sh installs it on CPython <= 3.11, x86-64 Linux only")
    return FaceEngine(Filter(proposals="yuface"))


GROUPS = ["groups/obama_and_biden.jpg", "groups/two_people.jpg", "groups/kit_with_rose.jpg"]


def test_every_box_of_the_full_scan_is_on_the_grid_snap_assumes(engine, faces_dir):
    from facegrid import imaging

    seen = 0
    for name in [*GROUPS, "people/obama/obama_1080p.jpg", "people/biden/biden2.jpg"]:
        rgb = imaging.decode((faces_dir / name).read_bytes(), 1024, 1 << 40).rgb
        for up in (0, 1):
            for r in engine.hog(rgb, up):
                box = (r.top(), r.right(), r.bottom(), r.left())
                assert engine.snap(box, up) == box, (name, up)
                moved = (box[0] + 2, box[1] - 1, box[2] + 2, box[3] - 1)  # a few pixels off: back to the same box
                assert engine.snap(moved, up) == box, (name, up)
                seen += 1
    assert seen >= 10


@pytest.mark.parametrize("name", [*GROUPS, "people/obama/obama_1080p.jpg", "people/rose_leslie/img1.jpg"])
def test_candidates_lose_no_face_the_full_scan_finds(engine, candidates_engine, faces_dir, name):
    data = (faces_dir / name).read_bytes()
    full, around = engine.analyse(data), candidates_engine.analyse(data)
    assert full.boxes
    for box in full.boxes:
        assert any(_same_face(box, b) for b in around.boxes), (name, box, around.boxes)
    for box, enc in zip(full.boxes, full.encodings, strict=True):
        if box in around.boxes:  # the same box: the same encoding
            other = around.encodings[around.boxes.index(box)]
            assert float(((enc - other) ** 2).sum() ** 0.5) < 1e-6


def test_small_photos_are_scanned_whole(engine, candidates_engine, faces_dir):
    data = (faces_dir / "people/obama/obama_small.jpg").read_bytes()  # 320x240: at most SCAN_WHOLE_SIDE
    assert candidates_engine.analyse(data).boxes == engine.analyse(data).boxes


@pytest.mark.parametrize("shape", [(600, 800, 3), (3, 900, 3), (900, 2, 3), (400, 330, 3)])
def test_a_photo_without_a_face_gives_no_box(candidates_engine, shape):
    import numpy as np

    rgb = np.random.default_rng(1).integers(0, 255, shape, dtype=np.uint8)
    assert candidates_engine.detect(rgb)[0] == []


def test_the_start_up_line_names_the_candidate_finder(candidates_engine, engine):
    assert "libfacedetection (yuface" in candidates_engine.describe()
    assert "libfacedetection" not in engine.describe()


def test_proposal_settings_are_checked(tmp_path):
    ini = tmp_path / "s.ini"
    ini.write_text("[filter]\nproposals = yunet\n")
    with pytest.raises(ConfigError, match="filter.proposals"):
        load(ini)
    ini.write_text("[filter]\nproposal_side = 100\n")
    with pytest.raises(ConfigError, match="proposal_side"):
        load(ini)
    assert load(ini, {"filter.proposals": "yuface", "filter.proposal_side": "800"}).filter.proposal_side == 800
