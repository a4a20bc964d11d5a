"""settings.ini -> Settings: defaults, overrides, and one-line errors (no server)."""

import pytest
from conftest import ROOT

from facegrid import settings
from facegrid.errors import ConfigError


def test_shipped_settings_ini_loads_and_matches_the_defaults():
    shipped = settings.load(ROOT / "settings.ini")
    defaults = settings.Settings()
    for section in ("beanstalkd", "queuer", "filter", "collector", "search"):
        assert getattr(shipped, section) == getattr(defaults, section), section


def test_every_setting_in_the_file_has_a_comment():
    lines = (ROOT / "settings.ini").read_text().splitlines()
    for i, line in enumerate(lines):
        if "=" in line and not line.startswith("#"):
            j = i - 1
            while j >= 0 and "=" in lines[j] and not lines[j].startswith("#"):
                j -= 1  # a group of settings under one comment
            assert lines[j].startswith("#"), f"settings.ini line {i + 1} ({line}) has no comment above it"


def test_overrides_beat_the_file_and_are_converted(tmp_path):
    ini = tmp_path / "s.ini"
    ini.write_text("[filter]\nupsample = 2\n[search]\ntolerance = 0.45\n")
    s = settings.load(ini, {"filter.upsample": "0", "beanstalkd.port": 12000})
    assert s.filter.upsample == 0 and s.beanstalkd.port == 12000 and s.search.tolerance == 0.45


@pytest.mark.parametrize(
    "text, needle",
    [
        ("[filter]\nmodel = fast\n", "filter.model = 'fast' is not allowed: use one of hog, cnn"),
        ("[filter]\nupsample = two\n", "filter.upsample = 'two' is not a valid int"),
        ("[filter]\nworker = 2\n", "unknown setting filter.worker"),
        ("[filters]\nworkers = 2\n", "unknown section [filters]"),
        ("[search]\ntolerance = 3\n", "search.tolerance = 3.0 is not allowed"),
        ("[beanstalkd]\nimages_tube = my tube\n", "beanstalkd.images_tube"),
    ],
)
def test_bad_values_name_the_setting_and_the_fix(tmp_path, text, needle):
    ini = tmp_path / "s.ini"
    ini.write_text(text)
    with pytest.raises(ConfigError) as err:
        settings.load(ini)
    assert needle in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_explicit_config_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        settings.load(tmp_path / "nope.ini")


@pytest.mark.parametrize(
    "text, expected",
    [
        ("10.0.0.5:11301", {"beanstalkd.host": "10.0.0.5", "beanstalkd.port": "11301"}),
        (":11302", {"beanstalkd.port": "11302"}),
        ("queuehost", {"beanstalkd.host": "queuehost"}),
        ("[::1]:11300", {"beanstalkd.host": "::1", "beanstalkd.port": "11300"}),
    ],
)
def test_parse_address(text, expected):
    assert settings.parse_address(text) == expected


def test_parse_address_rejects_a_bad_port():
    with pytest.raises(ConfigError, match="port must be a number"):
        settings.parse_address("host:eleven")
