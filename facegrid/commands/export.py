"""`facegrid export DIR`: the same as `search.py --export DIR`."""

from facegrid.commands import search

EPILOG = """\
examples:
  facegrid export photos/                      every stored annotated photo, as <sha256>.jpg
  facegrid export photos/ --id 0d4b9c1e        one photo (8+ leading hex digits of its sha256)
exit codes: 0 written, 1 nothing to write, 2 usage or settings error
"""


def main(argv=None) -> int:
    argv = list(argv) if argv is not None else __import__("sys").argv[1:]
    if argv and not argv[0].startswith("-"):
        argv = ["--export", argv[0], *argv[1:]]
    return search.main(argv)
