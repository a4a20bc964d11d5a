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
