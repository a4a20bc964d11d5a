"""The files a search wrote into an output folder, so the next run removes only those.

search.py writes its copies and reports into a folder the user names (--out),
which may hold the user's own files. Each run records what it wrote in
``.facegrid-written`` there; the next run into the same folder deletes exactly
those files first (a second search never leaves the first one's copies beside
its report), and nothing else. The record is checked too: a name outside the
shapes search writes, or with a folder part, is ignored.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import stat
import unicodedata
from pathlib import Path

from .errors import UsageError
from .textsafe import printable

log = logging.getLogger("facegrid.out")
MANIFEST = ".facegrid-written"
NAMES = re.compile(
    r"^(report\.(csv|html)|index\.html|\d{4,}-[\w.-]{1,100}\.jpg"
    r"|person-\d{3,}/(photos\.csv|face-[0-9a-f]{16}-\d+\.jpg))$"
)
PERSON_DIR = re.compile(r"^person-\d{3,}$")


def match_name(rank: int, path: str, image_id: str, suffix: str = "") -> str:
    """The copy of match `rank`: 0001-<original name>.jpg. The name is the stored path's last
    part without its extension (the path came from another host: hostile until checked), kept
    to letters, digits, '-', '_' and '.', at most 80 characters; the photo's id when nothing is
    left. The rank in front keeps two photos of the same name apart."""
    base = path.rsplit("/", 1)[-1]
    stem, dot, ext = base.rpartition(".")
    if not dot or not stem or not ext.isalnum():
        stem = base
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in unicodedata.normalize("NFC", stem))
    safe = re.sub(r"__+", "_", safe).strip("._-")[:80].rstrip("._-")
    return f"{rank:04d}-{safe or image_id[:16]}{suffix}.jpg"


class Written:
    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.names: list[str] = []

    def previous(self) -> list[str]:
        try:
            lines = (self.folder / MANIFEST).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError):
            return []
        return [n for n in lines if NAMES.match(n)]

    def clear_previous(self) -> int:
        """Delete what the last run here wrote (only regular files it named); returns how many."""
        self.folder.mkdir(parents=True, exist_ok=True)
        removed, dirs = 0, set()
        for name in self.previous():
            path = self.folder / name
            try:
                if stat.S_ISREG(os.lstat(path).st_mode):
                    path.unlink()
                    removed += 1
            except OSError:
                continue
            if "/" in name:
                dirs.add(name.split("/", 1)[0])
        for d in dirs:
            with contextlib.suppress(OSError):
                (self.folder / d).rmdir()  # only when empty: a file the user added keeps it
        with contextlib.suppress(OSError):
            (self.folder / MANIFEST).unlink()
        return removed

    def refuse_foreign_person_dirs(self, names: list[str]) -> None:
        """person-NNN/ folders this run is about to fill must not hold files it did not write."""
        for name in names:
            d = self.folder / name
            if d.exists() and (not d.is_dir() or d.is_symlink() or any(d.iterdir())):
                raise UsageError(
                    f"{printable(d)} exists and was not written by the last search.py --people "
                    "into this folder; pass another --out, or move it away"
                )

    def add(self, name: str) -> str:
        self.names.append(name)
        return name

    def save(self) -> None:
        (self.folder / MANIFEST).write_text("".join(n + "\n" for n in self.names), encoding="utf-8")
