"""settings.ini -> one frozen Settings object.

Every value has a default here, so a missing file section still gives a working
grid. Each setting is declared once, on its dataclass field (`setting`: default and
what it allows); validate() and the flags (cli.setting_flag) read the declarations.
Command-line flags override the file: :func:`load` takes them as ``{"section.key": value}``.
"""

from __future__ import annotations

import configparser
import dataclasses
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


@dataclasses.dataclass(frozen=True)
class Rule:
    """What a setting allows: a test of the value, and the words the error uses for it."""

    ok: Callable[[Any], bool]
    allowed: str
    choices: tuple[str, ...] = ()


def setting(default: Any, ok: Callable[[Any], bool] | None = None, allowed: str = "", choices: tuple = ()) -> Any:
    """A setting's default and what it allows, declared once on its dataclass field.

    Settings.validate checks every field by its rule, cli.setting_flag gives a
    flag the choices; tests/test_settings.py checks that every number has a rule.
    """
    if choices:
        ok, allowed = (lambda v: v in choices), "one of " + ", ".join(choices)
    meta = {"rule": Rule(ok, allowed, tuple(choices))} if ok else {}
    return dataclasses.field(default=default, metadata=meta)


def between(lo: float, hi: float) -> Callable[[Any], bool]:
    return lambda v: lo <= v <= hi


def distance(default: float, what: str = "") -> Any:
    """A face distance: more than 0, less than 2 (the largest between unit-length encodings)."""
    return setting(default, lambda v: 0.0 < v < 2.0, f"a distance between 0 and 2{what}")


def _tube(name: str) -> bool:
    return 0 < len(name) <= 200 and " " not in name


TUBE = "a tube name of 1-200 characters without spaces"


@dataclasses.dataclass(frozen=True)
class Beanstalkd:
    host: str = "127.0.0.1"
    port: int = setting(11300, between(1, 65535), "a port from 1 to 65535")
    images_tube: str = setting("images", _tube, TUBE)
    people_tube: str = setting("people", _tube, TUBE)
    ttr: int = setting(120, lambda v: v >= 2, "at least 2 seconds")
    max_ready: int = setting(500, lambda v: v >= 0, "0 (no bound) or more")
    max_attempts: int = setting(3, lambda v: v >= 1, "1 or more")
    retry_delay: int = setting(2, lambda v: v >= 0, "0 or more seconds")
    retry_delay_max: int = setting(300, lambda v: v >= 0, "0 or more seconds")
    io_timeout: float = setting(30.0, lambda v: v > 0, "more than 0 seconds")


@dataclasses.dataclass(frozen=True)
class Stuck:
    """The stuck-job watcher (facegrid/stuck.py), run by the collector."""

    watch: str = setting("on", choices=("on", "off"))
    grace: float = setting(5.0, between(1.0, 3600.0), "1 to 3600 seconds")
    interval: float = setting(1.0, between(0.1, 60.0), "0.1 to 60 seconds")
    lookback: int = setting(1_000_000, lambda v: v >= 0, "0 (only jobs put from now on) or more job ids")


@dataclasses.dataclass(frozen=True)
class Queuer:
    state: str = ""  # empty: per user, per beanstalkd address and tube (queuer_record.default_state)
    reencode_quality: int = setting(90, between(10, 95), "10 to 95")
    rescan: float = setting(60.0, lambda v: v >= 1, "at least 1 second")
    settle: float = setting(1.0, between(0.1, 600), "0.1 to 600 seconds")


def _workers(v: str) -> bool:
    return v == "auto" or (v.isdigit() and int(v) >= 1)


@dataclasses.dataclass(frozen=True)
class Filter:
    model: str = setting("hog", choices=("hog", "cnn"))
    upsample: int = setting(1, between(0, 3), "0, 1, 2 or 3")
    upsample_max_side: int = setting(0, lambda v: v >= 0, "0 (upsample every photo) or a size in pixels")
    detect_max_side: int = setting(1024, lambda v: v == 0 or v >= 160, "0 (full size) or at least 160 pixels")
    proposals: str = setting("yuface", choices=("off", "yuface"))
    proposal_side: int = setting(448, lambda v: v >= 160, "at least 160 pixels (448 measured)")
    clahe: str = setting("auto", choices=("auto", "on", "off"))
    jitters: int = setting(1, between(1, 100), "1 to 100")
    annotate_max_side: int = setting(1024, lambda v: v >= 64, "at least 64 pixels")
    annotate_quality: int = setting(85, between(10, 95), "10 to 95")
    crop_size: int = setting(112, between(32, 512), "32 to 512 pixels")
    max_pixels: int = setting(180_000_000, lambda v: v >= 1_000_000, "at least 1000000")
    workers: str = setting("1", _workers, "'auto' or a whole number from 1")
    log_every: int = setting(100, lambda v: v >= 1, "1 or more")


@dataclasses.dataclass(frozen=True)
class Collector:
    database: str = "facegrid.db"
    batch: int = setting(256, lambda v: v >= 1, "1 or more")
    log_every: int = setting(500, lambda v: v >= 1, "1 or more")


@dataclasses.dataclass(frozen=True)
class Search:
    tolerance: float = distance(0.5, " (0.5 is the measured default)")
    lookalike_count: int = setting(15, between(0, 1000), "0 (off) to 1000 (15 is the measured default)")
    lookalike_spread: float = distance(0.45, " (0.45 is the measured default)")
    lookalike_ratio: float = setting(
        0.84, lambda v: 0.0 < v <= 2.0, "more than 0, at most 2 (0.84 is the measured default)"
    )
    crowd_power: float = setting(0.5, between(0, 4), "0 (off) to 4 (0.5 is the measured default)")
    mixed_distance: float = setting(
        0.65, lambda v: 0.0 <= v < 2.0, "0 (no check) or a distance below 2 (0.65 is the measured default)"
    )
    expand_count: int = setting(20, between(0, 1000), "0 (no second pass) to 1000 (20 is the measured default)")
    expand_score: float = setting(
        0.95, lambda v: 0.0 < v <= 1.0, "more than 0, at most 1 (0.95 is the measured default)"
    )
    expand_rounds: int = setting(2, between(1, 10), "1 (one second pass) to 10 (2 is the measured default)")
    background: int = setting(1500, between(0, 100_000), "0 (off) to 100000 (1500 is the measured default)")
    candidate_power: float = setting(0.4, between(0, 1), "0 (off) to 1 (0.4 is the measured default)")
    candidate_scale: float = setting(0.985, lambda v: 0.5 <= v <= 1.5, "0.5 to 1.5 (0.985 is the measured default)")
    target_mirror: str = setting("on", choices=("on", "off"))
    mode: str = setting("mean", choices=("min", "mean"))
    out: str = "matches"
    limit: int = setting(0, lambda v: v >= 0, "0 (no limit) or more")

    def params(self):
        """The scoring parameters (facegrid.scoring.Params) these settings give."""
        from .scoring import Params

        return Params(
            tolerance=self.tolerance,
            lookalike_count=self.lookalike_count,
            lookalike_spread=self.lookalike_spread,
            lookalike_ratio=self.lookalike_ratio,
            expand_count=self.expand_count,
            expand_score=self.expand_score,
            expand_rounds=self.expand_rounds,
            background=self.background,
            crowd_power=self.crowd_power,
            candidate_power=self.candidate_power,
            candidate_scale=self.candidate_scale,
        )


@dataclasses.dataclass(frozen=True)
class Video:
    fps: float = setting(1.0, between(0.01, 30), "0.01 to 30 frames per second (1 is the default)")
    min_change: float = setting(2.0, between(0, 255), "0 (send every sample) to 255")
    jpeg_quality: int = setting(90, between(10, 100), "10 to 100")
    max_side: int = setting(0, lambda v: v == 0 or v >= 160, "0 (full size) or >= 160")
    track_iou: float = setting(0.3, between(0.0, 1.0), "0 to 1")
    track_distance: float = distance(0.6)
    track_jump: float = distance(0.45)
    track_gap: float = setting(2.0, lambda v: v >= 0, "0 or more seconds")


@dataclasses.dataclass(frozen=True)
class Web:
    host: str = "127.0.0.1"  # any other address needs --token-file (facegrid/web/security.py)
    port: int = setting(8080, between(1, 65535), "a port from 1 to 65535")
    max_upload_mb: int = setting(20, between(1, 200), "1 to 200 megabytes")
    max_targets: int = setting(20, between(1, 200), "1 to 200 photos")


@dataclasses.dataclass(frozen=True)
class Alerts:
    file: str = "facegrid-alerts.jsonl"  # empty: no file
    tube: str = setting("alerts", lambda v: v == "" or _tube(v), TUBE + ", or empty (no jobs)")
    command: str = ""
    command_timeout: float = setting(10.0, between(0.1, 3600), "0.1 to 3600 seconds")
    confidence: str = setting("weak", choices=("weak", "likely", "strong"))


@dataclasses.dataclass(frozen=True)
class Grid:
    key_file: str = ""  # $FACEGRID_KEY_FILE when not set by --set


@dataclasses.dataclass(frozen=True)
class Settings:
    grid: Grid = Grid()
    beanstalkd: Beanstalkd = Beanstalkd()
    stuck: Stuck = Stuck()
    queuer: Queuer = Queuer()
    filter: Filter = Filter()
    collector: Collector = Collector()
    search: Search = Search()
    video: Video = Video()
    web: Web = Web()
    alerts: Alerts = Alerts()

    def validate(self) -> Settings:
        """Check every setting against the rule declared on its field."""
        for section in dataclasses.fields(self):
            values = getattr(self, section.name)
            for f in dataclasses.fields(values):
                rule = f.metadata.get("rule")
                if rule is not None:
                    value = getattr(values, f.name)
                    _check(rule.ok(value), f"{section.name}.{f.name}", value, rule.allowed)
        return self


def rules() -> dict[str, Rule]:
    """Every declared rule, by "section.key"."""
    out = {}
    for section in dataclasses.fields(Settings):
        for f in dataclasses.fields(section.default):  # type: ignore[arg-type]
            if "rule" in f.metadata:
                out[f"{section.name}.{f.name}"] = f.metadata["rule"]
    return out


CHOICES = {key: rule.choices for key, rule in rules().items() if rule.choices}


def _check(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"setting {key} = {value!r} is not allowed: use {allowed}")


def cache_dir() -> Path:
    """Where facegrid keeps what it can make again: $FACEGRID_CACHE, else $XDG_CACHE_HOME/facegrid,
    else ~/.cache/facegrid (the same folder scripts/setup.sh and scripts/build-dlib.sh use)."""
    env = os.environ.get("FACEGRID_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "facegrid"


def state_dir() -> Path:
    """Where facegrid keeps what it must not lose but the user did not name (the queuer's record):
    $FACEGRID_STATE, else $XDG_STATE_HOME/facegrid, else ~/.local/state/facegrid."""
    env = os.environ.get("FACEGRID_STATE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "facegrid"


def default_config_path() -> Path:
    env = os.environ.get("FACEGRID_CONFIG")
    return Path(env) if env else ROOT / "settings.ini"


KINDS: dict[str, type] = {"int": int, "float": float, "str": str}


def kind_of(key: str) -> type:
    """The Python type of setting "section.name", from its dataclass field."""
    section, _, name = key.partition(".")
    fields = {f.name: f.type for f in dataclasses.fields(type(getattr(Settings(), section)))}
    kind = fields[name]
    return KINDS[kind] if isinstance(kind, str) else kind


def _convert(key: str, raw: Any, kind: Any) -> Any:
    if not isinstance(raw, str):
        return raw
    kind = KINDS.get(kind, kind) if isinstance(kind, str) else kind
    try:
        return kind(raw.strip())
    except ValueError:
        raise ConfigError(f"setting {key} = {raw!r} is not a valid {kind.__name__}") from None


def load(path: str | os.PathLike | None = None, overrides: Mapping[str, Any] | None = None) -> Settings:
    """Read settings.ini (or the default path), apply overrides, validate."""
    explicit = path is not None
    path = Path(path) if path is not None else default_config_path()
    parser = configparser.ConfigParser(inline_comment_prefixes=("#", ";"))
    if path.exists():
        try:
            parser.read(path, encoding="utf-8")
        except (configparser.Error, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: cannot parse ({exc}); fix the line it names") from None
    elif explicit:
        raise ConfigError(f"config file {path} does not exist; pass --config with an existing settings.ini")
    sections = {}
    known = {f.name for f in dataclasses.fields(Settings)}
    for section in parser.sections():
        if section not in known:
            raise ConfigError(f"{path}: unknown section [{section}]; known: {', '.join(sorted(known))}")
    overrides = dict(overrides or {})
    if os.environ.get("FACEGRID_KEY_FILE") and overrides.get("grid.key_file") is None:
        overrides["grid.key_file"] = os.environ["FACEGRID_KEY_FILE"]  # over the file, under --set
    for section in known:
        cls = type(getattr(Settings(), section))
        names = {f.name: f.type for f in dataclasses.fields(cls)}
        values = {}
        if parser.has_section(section):
            for key, raw in parser.items(section):
                if key not in names:
                    raise ConfigError(f"{path}: unknown setting {section}.{key}; known: {', '.join(names)}")
                values[key] = _convert(f"{section}.{key}", raw, names[key])
        for full, raw in list(overrides.items()):
            sec, _, key = full.partition(".")
            if sec == section and raw is not None:
                if key not in names:
                    raise ConfigError(f"unknown setting {full}; known in [{section}]: {', '.join(names)}")
                values[key] = _convert(full, raw, names[key])
                overrides.pop(full)
        sections[section] = cls(**values)
    leftover = [k for k, v in overrides.items() if v is not None]
    if leftover:
        raise ConfigError(f"unknown setting {leftover[0]}; use SECTION.KEY with a section from settings.ini")
    return Settings(**sections).validate()


def parse_address(text: str) -> dict[str, Any]:
    """'HOST:PORT' (or ':PORT', or 'HOST') -> overrides for [beanstalkd]."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = text, ""
    out: dict[str, Any] = {}
    if host:
        out["beanstalkd.host"] = host.strip("[]")
    if port:
        if not port.isdigit():
            raise ConfigError(f"--beanstalkd {text!r}: the port must be a number, as in 127.0.0.1:11300")
        out["beanstalkd.port"] = port
    return out
