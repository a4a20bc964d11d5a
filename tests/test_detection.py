"""Detection settings: upsampling only photos up to filter.upsample_max_side; HOG only around
candidate faces (filter.proposals = yuface) gives the full scan's boxes."""

from __future__ import annotations

import dataclasses
import logging
import os
import subprocess
import sys

import numpy as np
import pytest

from facegrid import imaging
from facegrid.errors import ConfigError
from facegrid.faces import FaceEngine
from facegrid.settings import Filter, load

pytestmark = pytest.mark.slow  # detects on every labelled photo at several settings


@pytest.fixture(scope="module")
def engine() -> FaceEngine:
    return FaceEngine(Filter(proposals="off"))  # the full scan


def test_small_photos_are_upsampled_as_by_default(engine, faces_dir):
    data = (faces_dir / "people/obama/obama_small.jpg").read_bytes()  # 320x240
    default = engine.analyse(data)
    base = engine.conf
    engine.conf = dataclasses.replace(base, upsample_max_side=1024)
    try:
        limited = engine.analyse(data)
    finally:
        engine.conf = base
    assert default.upsample == limited.upsample == 1
    assert limited.boxes == default.boxes and len(limited.boxes) == 1


def test_larger_photos_skip_the_upsampling(engine, faces_dir):
    data = (faces_dir / "people/obama/obama_1080p.jpg").read_bytes()  # 1920x1080
    base = engine.conf
    engine.conf = dataclasses.replace(base, upsample_max_side=1024)
    try:
        limited = engine.analyse(data)
    finally:
        engine.conf = base
    assert limited.upsample == 0
    assert engine.analyse(data).upsample == 1
    assert len(limited.boxes) == 1  # a face this large needs no upsampling


def test_upsample_max_side_is_checked(tmp_path):
    ini = tmp_path / "s.ini"
    ini.write_text("[filter]\nupsample_max_side = -5\n")
    with pytest.raises(ConfigError, match="upsample_max_side"):
        load(ini)
    assert load(ini, {"filter.upsample_max_side": "800"}).filter.upsample_max_side == 800


GROUPS = ["groups/obama_and_biden.jpg", "groups/two_people.jpg", "groups/kit_with_rose.jpg"]


# -- filter.proposals = yuface: HOG only around libfacedetection's candidates -------------------
@pytest.fixture(scope="module")
def candidates_engine() -> FaceEngine:
    pytest.importorskip("yuface", reason="setup.sh installs it on CPython <= 3.11, x86-64 Linux only")
    around = FaceEngine(Filter(proposals="yuface"))
    assert around.around, around.describe()
    return around


def test_the_pyramid_and_one_level_scans_are_the_full_scan(engine, candidates_engine, faces_dir):
    """What the candidate route rests on: dlib's levels remade from Python, each scored by the
    one-level, every-window detector, then suppressed by dlib's overlap test, are the full scan:
    the same boxes, the same scores."""
    scan, pyr6 = candidates_engine.level_scan, candidates_engine.pyr6
    assert (round(scan.match, 3), round(scan.covered, 3), scan.min_side) == (0.330, 0.789, 64)  # dlib's model
    for name in ["groups/obama_and_biden.jpg", "people/obama/obama_240p.jpg", "people/biden/biden2.jpg"]:
        rgb = imaging.decode((faces_dir / name).read_bytes(), 1024, 1 << 40).rgb
        rects, scores, kinds = engine.hog.run(rgb, 1, 0.0)
        want = sorted(zip([(r.left(), r.top(), r.right(), r.bottom()) for r in rects], scores, kinds, strict=True))
        levels = [level for _, level in candidates_engine.pyramid(rgb, 1, 1000)]
        assert len(levels) == candidates_engine.level_count(levels[0].shape[1], levels[0].shape[0]) > 10
        windows = []
        for j, level in enumerate(levels):
            for r, score, kind in zip(*scan.detector.run(level, 0, 0.0), strict=True):
                r = pyr6.rect_up(r, j) if j else r
                windows.append((score, (r.left(), r.top(), r.right(), r.bottom()), kind))
        kept: list = []
        for score, box, kind in sorted(windows, key=lambda w: -w[0]):
            if not any(scan.overlaps(box, k[1]) for k in kept):
                kept.append((score, box, kind))
        got = []
        for score, (left, top, right, bottom), kind in kept:
            r = candidates_engine.pyr2.rect_down(candidates_engine.dlib.rectangle(left, top, right, bottom))
            got.append(((r.left(), r.top(), r.right(), r.bottom()), score, kind))
        assert sorted(got) == want, name
        assert len(windows) > len(want)  # the copy kept every window: there was something to suppress


def test_candidate_boxes_and_encodings_are_the_full_scans(engine, candidates_engine, faces_dir, labels):
    """Every labelled photo: the same boxes as the full scan, hence the same encodings."""
    faces = 0
    for name in labels:
        data = (faces_dir / name).read_bytes()
        full, around = engine.analyse(data), candidates_engine.analyse(data)
        assert around.boxes == full.boxes, name
        for a, b in zip(full.encodings, around.encodings, strict=True):
            assert np.array_equal(a, b), name
        faces += len(full.boxes)
    assert faces == sum(v["faces"] for v in labels.values())


def test_candidate_boxes_at_other_sizes_and_upsampling(faces_dir):
    """Upsample 0 and 2 build other pyramids; the boxes are still the full scan's."""
    pytest.importorskip("yuface")
    for up, side in ((0, 1024), (2, 512)):
        full = FaceEngine(Filter(proposals="off", upsample=up, detect_max_side=side))
        around = FaceEngine(Filter(proposals="yuface", upsample=up, detect_max_side=side))
        for name in [*GROUPS, "people/obama/obama_1080p.jpg"]:
            rgb = imaging.decode((faces_dir / name).read_bytes(), side, 1 << 40).rgb
            assert around.detect(rgb)[0] == full.detect(rgb)[0], (name, up)


def test_without_yuface_the_full_scan_runs_with_one_log_line(monkeypatch, caplog, faces_dir):
    monkeypatch.setitem(sys.modules, "yuface", None)  # as where no wheel installs: import fails
    with caplog.at_level(logging.WARNING, logger="facegrid.faces"):
        fallback = FaceEngine(Filter(proposals="yuface"))
    assert not fallback.around
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert "yuface" in caplog.records[0].getMessage() and "whole pictures" in caplog.records[0].getMessage()
    assert "whole pictures" in fallback.describe()
    rgb = imaging.decode((faces_dir / GROUPS[0]).read_bytes(), 1024, 1 << 40).rgb
    assert fallback.detect(rgb)[0] == sorted(fallback.face_locations(rgb, 1, "hog"), key=lambda b: (b[3], b[0]))
    assert len(fallback.detect(rgb)[0]) == 3


def test_small_photos_are_scanned_whole(engine, candidates_engine, faces_dir):
    data = (faces_dir / "people/obama/obama_small.jpg").read_bytes()  # 320x240: at most SCAN_WHOLE_SIDE
    assert candidates_engine.analyse(data).boxes == engine.analyse(data).boxes


@pytest.mark.parametrize("shape", [(600, 800, 3), (3, 900, 3), (900, 2, 3), (400, 330, 3)])
def test_a_photo_without_a_face_gives_no_box(candidates_engine, shape):
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


def test_the_cached_frontal_detector_is_dlibs_own(faces_dir, tmp_path, monkeypatch):
    """The saved copy the engine loads (0.01 s instead of 0.7 s) scores as get_frontal_face_detector;
    a damaged copy is made again; a cache folder that cannot be written still gives a detector."""
    import dlib

    from facegrid.faces import frontal_detector

    rgb = np.asarray(imaging.decode((faces_dir / "groups/obama_and_biden.jpg").read_bytes(), 1024, 10**9).rgb)
    own = dlib.get_frontal_face_detector().run(rgb, 1, 0.0)
    monkeypatch.setenv("FACEGRID_CACHE", str(tmp_path / "cache"))
    first = frontal_detector(dlib)  # made, and saved
    (saved,) = (tmp_path / "cache").glob("frontal-face-detector-dlib-*.svm")
    again = frontal_detector(dlib)  # loaded from the saved copy
    for det in (first, again):
        rects, scores, kinds = det.run(rgb, 1, 0.0)
        assert [(r.left(), r.top(), r.right(), r.bottom()) for r in rects] == [
            (r.left(), r.top(), r.right(), r.bottom()) for r in own[0]
        ]
        assert scores == own[1] and len(scores) >= 2
    saved.write_bytes(saved.read_bytes()[:5000])  # cut short
    assert frontal_detector(dlib).run(rgb, 1, 0.0)[1] == own[1]
    assert saved.stat().st_size > 5000  # made again
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    monkeypatch.setenv("FACEGRID_CACHE", str(blocked / "cache"))
    assert frontal_detector(dlib).run(rgb, 1, 0.0)[1] == own[1]


# -- facegrid/resize.c: dlib's resize_image, pixel for pixel ------------------------------------
def test_the_resize_kernel_gives_dlibs_pixels(candidates_engine, faces_dir):
    """The kernel the candidate route makes its pyramid levels with gives dlib.resize_image's every
    pixel: random pictures up (pyramid_up's sizes and others) and down (pyramid_down<6>'s and others),
    and a real photo's whole pyramid against dlib's pyramid_down(6), level by level."""
    import dlib

    kernel = candidates_engine.resize
    assert kernel is not None, candidates_engine.describe()  # setup.sh leaves a C compiler (dlib needs one)
    rng = np.random.default_rng(3)
    for trial in range(80):
        r, c = (int(v) for v in rng.integers(2, 400, 2))
        other = tuple(int(v) for v in rng.integers(2, 500, 2))
        rows, cols = [(2 * r, 2 * c), (max(1, 5 * r // 6), max(1, 5 * c // 6)), other][trial % 3]
        img = rng.integers(0, 256, (r, c, 3), dtype=np.uint8)
        assert np.array_equal(kernel(img, rows, cols), dlib.resize_image(img, rows, cols)), (r, c, rows, cols)
    level = imaging.decode((faces_dir / "groups/obama_and_biden.jpg").read_bytes(), 1024, 1 << 40).rgb
    pyr6 = dlib.pyramid_down(6)
    while min(level.shape[:2]) > 20:
        want = pyr6(level)
        got = kernel(level, 5 * level.shape[0] // 6, 5 * level.shape[1] // 6)
        assert np.array_equal(got, want), level.shape
        level = want


def test_without_the_kernel_dlib_makes_the_levels(monkeypatch, tmp_path, faces_dir, engine):
    """No C compiler (or a kernel that does not give dlib's pixels): one log line, the levels come from
    dlib, and the boxes are still the full scan's. A damaged compiled copy is made again."""
    import dlib

    from facegrid import resize

    pytest.importorskip("yuface")
    monkeypatch.setenv("FACEGRID_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CC", "/bin/false")
    monkeypatch.setattr(resize, "_compiler", lambda: "/bin/false")
    kernel, why = resize.resizer_for(dlib)
    assert kernel is None and "could not build facegrid/resize.c" in why
    slow = FaceEngine(Filter(proposals="yuface"))
    assert slow.resize is None and "pyramid levels by dlib" in slow.describe()
    rgb = imaging.decode((faces_dir / "groups/obama_and_biden.jpg").read_bytes(), 1024, 1 << 40).rgb
    assert slow.detect(rgb)[0] == engine.detect(rgb)[0]
    monkeypatch.undo()
    # a fresh process each time: a library once loaded stays loaded in a process, whatever its file becomes
    check = "import dlib; from facegrid import resize; print(resize.resizer_for(dlib)[0] is not None)"
    env = {**os.environ, "FACEGRID_CACHE": str(tmp_path / "cache")}
    assert subprocess.run([sys.executable, "-c", check], env=env, capture_output=True, text=True).stdout == "True\n"
    (made,) = (tmp_path / "cache").glob("resize-*.so")
    made.write_bytes(b"not a shared library")
    assert subprocess.run([sys.executable, "-c", check], env=env, capture_output=True, text=True).stdout == "True\n"
    assert made.stat().st_size > 1000  # made again
