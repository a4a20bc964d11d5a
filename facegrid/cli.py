"""What every top-level script shares: common flags, settings, exit codes."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from typing import Any

from . import log as logsetup
from . import settings as settings_mod
from .errors import EXIT_USAGE, FacegridError

PROG: str | None = None  # set by `facegrid COMMAND` so help and errors name the command as typed


def parser(prog: str, description: str, epilog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG or prog, description=description, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--config", metavar="PATH", help="settings file (default: settings.ini beside the scripts, or $FACEGRID_CONFIG)"
    )
    p.add_argument("--beanstalkd", metavar="HOST:PORT", help="beanstalkd address (overrides [beanstalkd] host, port)")
    p.add_argument(
        "--set",
        metavar="SECTION.KEY=VALUE",
        action="append",
        default=[],
        help="override any setting from settings.ini; repeatable",
    )
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log lines (repeatable)")
    p.add_argument("-q", "--quiet", action="count", default=0, help="fewer log lines (repeatable)")
    return p


SETTING_DEST = "setting:"  # argparse dest prefix of a flag made by setting_flag


def setting_flag(p: argparse.ArgumentParser, flag: str, key: str, help: str, metavar: str | None = None) -> None:
    """A flag that overrides setting `key` ("section.name"): its type and choices come from
    settings.py (the dataclass field and CHOICES), and load_settings applies it by itself."""
    kind = settings_mod.kind_of(key)
    kw: dict[str, Any] = {"dest": SETTING_DEST + key, "help": f"{help} ([{key.replace('.', '] ', 1)})"}
    if key in settings_mod.CHOICES:
        kw["choices"] = settings_mod.CHOICES[key]
    else:
        kw["type"], kw["metavar"] = kind, metavar
    p.add_argument(flag, **kw)


def parse_set(items: list[str]) -> dict[str, Any]:
    """--set SECTION.KEY=VALUE flags as {"section.key": "value"}, the one place they are parsed."""
    merged: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or "." not in key:
            raise settings_mod.ConfigError(f"--set {item!r}: use SECTION.KEY=VALUE, as in --set filter.upsample=2")
        merged[key.strip()] = value
    return merged


def load_settings(args: argparse.Namespace, overrides: dict[str, Any] | None = None) -> settings_mod.Settings:
    merged = parse_set(args.set)
    if args.beanstalkd:
        merged.update(settings_mod.parse_address(args.beanstalkd))
    flags = {k[len(SETTING_DEST) :]: v for k, v in vars(args).items() if k.startswith(SETTING_DEST)}
    merged.update({k: v for k, v in {**flags, **(overrides or {})}.items() if v is not None})
    return settings_mod.load(args.config, merged)


def run(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    """Call a script's main and turn exceptions into one line and an exit code."""
    try:
        return main(argv)
    except FacegridError as exc:
        logging.getLogger("facegrid").error("%s", exc) if logging.getLogger().handlers else print(
            f"error: {exc}", file=sys.stderr
        )
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


def setup_logging(args: argparse.Namespace) -> None:
    logsetup.setup(args.verbose, args.quiet)


__all__ = ["parser", "setting_flag", "load_settings", "run", "setup_logging", "EXIT_USAGE"]
