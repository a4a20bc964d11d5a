"""The photos in a folder, as the queuer and search.py both see them.

One walk: files with a photo's extension below the given folders, links followed
once (a link loop is reported, never walked twice) and only while they stay inside
the folders; everything left aside is reported or counted.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".heic", ".heif"}


def display_path(path: str) -> str:
    """A path as text; bytes that are not UTF-8 are shown as \\xNN."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def inside(path: str, roots: list[str]) -> bool:
    """Does path, with every link resolved, lie in one of roots (already resolved)?"""
    real = os.path.realpath(path)
    return any(real == r or real.startswith(r.rstrip(os.sep) + os.sep) for r in roots)


def skipped_key(path: str) -> str:
    """How the summary names a file that is not a photo: its extension (.mp3), .none or .other.

    A name's extension is the user's text: anything but a short plain one is counted as .other,
    so the summary stays KEY=N words."""
    ext = os.path.splitext(os.fsencode(path))[1].lower()
    if not ext:
        return ".none"
    plain = len(ext) <= 11 and all(c in b"abcdefghijklmnopqrstuvwxyz0123456789_-" for c in ext[1:])
    return ext.decode() if plain else ".other"


def walk(
    roots: list[str],
    report: Callable[[str, str], None],
    other: Callable[[str], None] | None = None,
    extensions: set[str] | frozenset[str] = frozenset(EXTENSIONS),
) -> Iterator[str]:
    """Every file with one of extensions below roots, following links once (no loops) and only within roots.

    other, if given, is called with every other file found (not one of extensions)."""
    real_roots = [os.path.realpath(r) for r in roots]
    seen: set[tuple[int, int]] = set()
    stack = [os.path.abspath(r) for r in reversed(roots)]
    while stack:
        top = stack.pop()
        try:
            st = os.stat(top)
        except OSError as exc:
            report(top, f"cannot open ({exc.strerror}); skipped")
            continue
        if stat.S_ISREG(st.st_mode):
            if Path(top).suffix.lower() in extensions:
                yield top
            continue
        key = (st.st_dev, st.st_ino)
        if key in seen:
            report(top, "folder already walked (a link loop?); skipped")
            continue
        seen.add(key)
        try:
            with os.scandir(top) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            report(top, f"cannot list folder ({exc.strerror}); skipped")
            continue
        subdirs: list[str] = []
        yield from _folder_photos(entries, real_roots, report, other, extensions, subdirs)
        stack.extend(reversed(subdirs))


def _folder_photos(
    entries: list[os.DirEntry[str]],
    real_roots: list[str],
    report: Callable[[str, str], None],
    other: Callable[[str], None] | None,
    extensions: set[str] | frozenset[str],
    subdirs: list[str],
) -> Iterator[str]:
    """One folder's entries, in order: the photos yielded, the folders to walk added to subdirs,
    links out of real_roots and broken links to a photo reported, other files given to other."""
    for entry in entries:
        try:
            if entry.is_symlink() and not inside(entry.path, real_roots) and os.path.exists(entry.path):
                report(
                    entry.path,
                    f"link points outside the queued folders (to "
                    f"{display_path(os.path.realpath(entry.path))}); skipped",
                )
                continue
            if entry.is_dir():
                subdirs.append(entry.path)
            elif entry.is_file():
                if os.path.splitext(entry.name)[1].lower() in extensions:
                    yield entry.path
                elif other is not None:
                    other(entry.path)
            elif entry.is_symlink() and os.path.splitext(entry.name)[1].lower() in extensions:
                report(entry.path, "broken or looping link; skipped")
        except OSError as exc:
            report(entry.path, f"cannot stat ({exc.strerror}); skipped")
