"""Print the package lists of pyproject.toml, one a line, for scripts/setup.sh and build-dlib.sh.

pyproject.toml is the one source of the versions facegrid installs.
Usage: python3 scripts/deps.py runtime|dev|no-deps|dlib|dlib-bin
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def lists() -> dict[str, list[str]]:
    data = tomllib.loads(PYPROJECT.read_text())
    tool = data["tool"]["facegrid"]
    return {
        "runtime": data["project"]["dependencies"],
        "dev": data["project"]["optional-dependencies"]["dev"],
        "no-deps": tool["no-deps"],
        "dlib": [tool["dlib"]],
        "dlib-bin": [tool["dlib-bin"]],
    }


def main(argv: list[str]) -> int:
    known = lists()
    if len(argv) != 1 or argv[0] not in known:
        print(f"deps.py: name one list of {', '.join(known)}, as in: python3 scripts/deps.py runtime", file=sys.stderr)
        return 2
    print("\n".join(known[argv[0]]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
