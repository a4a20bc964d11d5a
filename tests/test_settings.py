"""settings.ini -> Settings: defaults, overrides, and one-line errors (no server)."""

import dataclasses

import pytest
from conftest import ROOT

from facegrid import settings
from facegrid.errors import ConfigError


def test_shipped_settings_ini_loads_and_matches_the_defaults():
    shipped = settings.load(ROOT / "settings.ini")
    defaults = settings.Settings()
    for section in ("grid", "beanstalkd", "queuer", "filter", "collector", "search", "video"):
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


def test_every_number_and_choice_declares_what_it_allows():
    """A setting's rule sits on its dataclass field, so validate() cannot miss a new one."""
    rules = settings.rules()
    numbers = [
        f"{section.name}.{f.name}"
        for section in dataclasses.fields(settings.Settings)
        for f in dataclasses.fields(section.default)
        if settings.kind_of(f"{section.name}.{f.name}") in (int, float)
    ]
    assert numbers and not [key for key in numbers if key not in rules]
    choices = {
        "filter.model",
        "filter.proposals",
        "filter.clahe",
        "search.mode",
        "search.target_mirror",
        "alerts.confidence",
        "stuck.watch",
    }
    assert set(settings.CHOICES) == choices


@pytest.mark.parametrize(
    "key, bad",
    [
        ("beanstalkd.retry_delay", "-1"),
        ("beanstalkd.io_timeout", "0"),
        ("queuer.reencode_quality", "101"),
        ("filter.log_every", "0"),
        ("search.limit", "-5"),
        ("video.track_distance", "2.5"),
        ("queuer.settle", "0"),
        ("queuer.rescan", "0.5"),
        ("alerts.tube", "two words"),
        ("alerts.command_timeout", "0"),
        ("alerts.confidence", "sure"),
    ],
)
def test_a_value_outside_its_rule_is_refused_in_one_line(key, bad):
    with pytest.raises(ConfigError) as e:
        settings.load(overrides={key: bad})
    assert str(e.value).startswith(f"setting {key} = ") and "use " in str(e.value) and "\n" not in str(e.value)


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


def test_settings_ini_names_every_setting_and_only_those():
    """settings.ini is checked against the one declaration in settings.py: no setting missing, none unknown."""
    import configparser
    import dataclasses

    parser = configparser.ConfigParser(inline_comment_prefixes=("#", ";"))
    parser.read(ROOT / "settings.ini", encoding="utf-8")
    in_file = {f"{s}.{k}" for s in parser.sections() for k in parser[s]}
    declared = {
        f"{section.name}.{f.name}"
        for section in dataclasses.fields(settings.Settings)
        for f in dataclasses.fields(type(getattr(settings.Settings(), section.name)))
    }
    assert in_file == declared, (sorted(declared - in_file), sorted(in_file - declared))


@pytest.mark.parametrize("script", ["filter.py", "search.py", "queuer.py", "collector.py"])
def test_setting_flags_take_type_and_choices_from_settings(script):
    """A flag made by cli.setting_flag reaches the setting it names, with settings.py's type and choices."""
    import importlib.util

    from facegrid import cli

    spec = importlib.util.spec_from_file_location(script[:-3], ROOT / script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    made = []
    real = cli.setting_flag

    def record(p, flag, key, help, metavar=None):
        made.append((flag, key))
        real(p, flag, key, help, metavar)

    cli.setting_flag = record
    try:
        with pytest.raises(SystemExit):
            module.main(["--help"])
    finally:
        cli.setting_flag = real
    assert made, f"{script} has no setting flags"
    for flag, key in made:
        p = cli.parser("x", "", "")
        real(p, flag, key, "h")
        section, name = key.split(".")
        default = getattr(getattr(settings.Settings(), section), name)
        value = settings.CHOICES[key][0] if key in settings.CHOICES else str(default + 1 if default != "1" else 2)
        if key in settings.CHOICES:  # a value outside the choices is refused by the flag itself
            with pytest.raises(SystemExit):
                p.parse_args([flag, "no-such-choice"])
        loaded = cli.load_settings(p.parse_args([flag, value]))
        got = getattr(getattr(loaded, section), name)
        assert str(got) == value and type(got) is type(default), (flag, key, got)
