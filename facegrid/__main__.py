"""`facegrid COMMAND ...` and `python -m facegrid COMMAND ...`: one command for every role and tool."""

from __future__ import annotations

import importlib
import sys

from facegrid import __version__, cli
from facegrid.commands import COMMANDS
from facegrid.errors import EXIT_USAGE


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {what}" for name, (_, what) in COMMANDS.items()]
    return (
        "usage: facegrid COMMAND [options]   (facegrid COMMAND --help for each)\n\ncommands:\n"
        + "\n".join(lines)
        + "\n\nexamples:\n  facegrid queue /srv/photos\n  facegrid filter --workers auto\n"
        "  facegrid collect --db faces.db\n  facegrid search target/ --db faces.db\n"
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage(), end="")
        return 0 if argv else EXIT_USAGE
    if argv[0] == "--version":
        print(f"facegrid {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"facegrid: unknown command {name!r}; choose one of: {', '.join(COMMANDS)}", file=sys.stderr)
        return EXIT_USAGE
    module = importlib.import_module(COMMANDS[name][0])
    cli.PROG = f"facegrid {name}"
    return cli.run(module.main, rest)


if __name__ == "__main__":
    sys.exit(main())
