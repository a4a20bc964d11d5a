"""settings.ini -> one frozen Settings object.

Every value has a default here, so a missing file section still gives a working
grid. Command-line flags override the file: each script turns its flags into a
``{"section.key": value}`` dict and passes it to :func:`load`.
"""

from __future__ import annotations

import configparser
import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
CHOICES = {
    "filter.model": ("hog", "cnn"),
    "filter.proposals": ("off", "yuface"),
    "filter.clahe": ("auto", "on", "off"),
    "search.mode": ("min", "mean"),
}


@dataclasses.dataclass(frozen=True)
class Beanstalkd:
    host: str = "127.0.0.1"
    port: int = 11300
    images_tube: str = "images"
    people_tube: str = "people"
    ttr: int = 120
    max_ready: int = 500
    max_attempts: int = 3
    retry_delay: int = 2
    retry_delay_max: int = 300
    io_timeout: float = 30.0


@dataclasses.dataclass(frozen=True)
class Queuer:
    state: str = "facegrid-queuer.sqlite"
    reencode_quality: int = 90


@dataclasses.dataclass(frozen=True)
class Filter:
    model: str = "hog"
    upsample: int = 1
    upsample_max_side: int = 0
    detect_max_side: int = 1024
    proposals: str = "off"
    proposal_side: int = 512
    clahe: str = "auto"
    jitters: int = 1
    annotate_max_side: int = 1024
    annotate_quality: int = 85
    crop_size: int = 112
    max_pixels: int = 180_000_000
    workers: str = "1"
    log_every: int = 100


@dataclasses.dataclass(frozen=True)
class Collector:
    database: str = "facegrid.db"
    batch: int = 256
    log_every: int = 500


@dataclasses.dataclass(frozen=True)
class Search:
    tolerance: float = 0.5
    lookalike_count: int = 15
    lookalike_spread: float = 0.45
    lookalike_ratio: float = 0.8
    mixed_distance: float = 0.65
    expand_count: int = 20
    expand_score: float = 0.85
    mode: str = "mean"
    out: str = "matches"
    limit: int = 0

    def params(self):
        """The scoring parameters (facegrid.scoring.Params) these settings give."""
        from .scoring import Params

        return Params(
            self.tolerance,
            self.lookalike_count,
            self.lookalike_spread,
            self.lookalike_ratio,
            self.expand_count,
            self.expand_score,
        )


@dataclasses.dataclass(frozen=True)
class Video:
    fps: float = 1.0
    min_change: float = 2.0
    jpeg_quality: int = 90
    max_side: int = 0
    track_iou: float = 0.3
    track_distance: float = 0.6
    track_jump: float = 0.45
    track_gap: float = 2.0


@dataclasses.dataclass(frozen=True)
class Grid:
    key_file: str = ""  # $FACEGRID_KEY_FILE when not set by --set


@dataclasses.dataclass(frozen=True)
class Settings:
    grid: Grid = Grid()
    beanstalkd: Beanstalkd = Beanstalkd()
    queuer: Queuer = Queuer()
    filter: Filter = Filter()
    collector: Collector = Collector()
    search: Search = Search()
    video: Video = Video()

    def validate(self) -> Settings:
        b, f = self.beanstalkd, self.filter
        _check(0 < b.port < 65536, "beanstalkd.port", b.port, "a port from 1 to 65535")
        _check(b.ttr >= 2, "beanstalkd.ttr", b.ttr, "at least 2 seconds")
        _check(b.max_ready >= 0, "beanstalkd.max_ready", b.max_ready, "0 (no bound) or more")
        _check(b.max_attempts >= 1, "beanstalkd.max_attempts", b.max_attempts, "1 or more")
        for name in ("images_tube", "people_tube"):
            tube = getattr(b, name)
            _check(
                0 < len(tube) <= 200 and " " not in tube,
                f"beanstalkd.{name}",
                tube,
                "a tube name of 1-200 characters without spaces",
            )
        for key, allowed in CHOICES.items():
            section, field = key.split(".")
            value = getattr(getattr(self, section), field)
            _check(value in allowed, key, value, "one of " + ", ".join(allowed))
        _check(0 <= f.upsample <= 3, "filter.upsample", f.upsample, "0, 1, 2 or 3")
        _check(
            f.upsample_max_side >= 0,
            "filter.upsample_max_side",
            f.upsample_max_side,
            "0 (upsample every photo) or a size in pixels",
        )
        _check(
            f.detect_max_side == 0 or f.detect_max_side >= 160,
            "filter.detect_max_side",
            f.detect_max_side,
            "0 (full size) or at least 160 pixels",
        )
        _check(f.proposal_side >= 160, "filter.proposal_side", f.proposal_side, "at least 160 pixels (512 measured)")
        _check(f.annotate_max_side >= 64, "filter.annotate_max_side", f.annotate_max_side, "at least 64 pixels")
        _check(1 <= f.jitters <= 100, "filter.jitters", f.jitters, "1 to 100")
        _check(10 <= f.annotate_quality <= 95, "filter.annotate_quality", f.annotate_quality, "10 to 95")
        _check(32 <= f.crop_size <= 512, "filter.crop_size", f.crop_size, "32 to 512 pixels")
        _check(f.max_pixels >= 1_000_000, "filter.max_pixels", f.max_pixels, "at least 1000000")
        _check(
            f.workers == "auto" or (f.workers.isdigit() and int(f.workers) >= 1),
            "filter.workers",
            f.workers,
            "'auto' or a whole number from 1",
        )
        _check(self.collector.batch >= 1, "collector.batch", self.collector.batch, "1 or more")
        _check(
            0.0 < self.search.tolerance < 2.0,
            "search.tolerance",
            self.search.tolerance,
            "a distance between 0 and 2 (0.5 is the measured default)",
        )
        se = self.search
        _check(
            0 <= se.lookalike_count <= 1000,
            "search.lookalike_count",
            se.lookalike_count,
            "0 (off) to 1000 (15 is the measured default)",
        )
        _check(
            0.0 < se.lookalike_spread < 2.0,
            "search.lookalike_spread",
            se.lookalike_spread,
            "a distance between 0 and 2 (0.45 is the measured default)",
        )
        _check(
            0.0 < se.lookalike_ratio <= 2.0,
            "search.lookalike_ratio",
            se.lookalike_ratio,
            "more than 0, at most 2 (0.8 is the measured default)",
        )
        _check(
            0 <= se.expand_count <= 1000,
            "search.expand_count",
            se.expand_count,
            "0 (no second pass) to 1000 (20 is the measured default)",
        )
        _check(
            0.0 < se.expand_score <= 1.0,
            "search.expand_score",
            se.expand_score,
            "more than 0, at most 1 (0.85 is the measured default)",
        )
        _check(
            0.0 <= se.mixed_distance < 2.0,
            "search.mixed_distance",
            se.mixed_distance,
            "0 (no check) or a distance below 2 (0.65 is the measured default)",
        )
        vi = self.video
        _check(0.01 <= vi.fps <= 30, "video.fps", vi.fps, "0.01 to 30 frames per second (1 is the default)")
        _check(0 <= vi.min_change <= 255, "video.min_change", vi.min_change, "0 (send every sample) to 255")
        _check(10 <= vi.jpeg_quality <= 100, "video.jpeg_quality", vi.jpeg_quality, "10 to 100")
        _check(vi.max_side == 0 or vi.max_side >= 160, "video.max_side", vi.max_side, "0 (full size) or >= 160")
        _check(0.0 <= vi.track_iou <= 1.0, "video.track_iou", vi.track_iou, "0 to 1")
        _check(0.0 < vi.track_distance < 2.0, "video.track_distance", vi.track_distance, "a distance between 0 and 2")
        _check(0.0 < vi.track_jump < 2.0, "video.track_jump", vi.track_jump, "a distance between 0 and 2")
        _check(vi.track_gap >= 0, "video.track_gap", vi.track_gap, "0 or more seconds")
        return self


def _check(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"setting {key} = {value!r} is not allowed: use {allowed}")


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
                values[key] = _convert(full, raw if isinstance(raw, str) else raw, names[key])
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
