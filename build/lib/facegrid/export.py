"""search.py --export DIR: stored annotated photos back to disk.

Files are named from ids only (<sha256>.jpg), never from the stored paths, so an
export cannot write outside DIR whatever the paths in the database hold.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from . import store
from .errors import UsageError
from .htmlkit import readable_jpeg

log = logging.getLogger("facegrid.export")
ID_RE = re.compile(r"^[0-9a-f]{8,64}$")


def resolve_ids(db, wanted: list[str]) -> list[str]:
    """Full ids for full ids or unique prefixes (8+ hex digits); all ids when none are given."""
    if not wanted:
        return store.annotated_ids(db)
    out = []
    for raw in wanted:
        key = raw.strip().lower()
        if not ID_RE.match(key):
            raise UsageError(
                f"--id {raw!r}: give a photo's sha256 (or its first 8+ hex digits), as in report.csv's image_id column"
            )
        rows = store.ids_starting(db, key)
        if not rows:
            raise UsageError(f"--id {raw}: no stored photo has this id; check it against report.csv")
        if len(rows) > 1:
            raise UsageError(f"--id {raw}: several stored photos start with it; give more digits")
        out.append(rows[0])
    return list(dict.fromkeys(out))


def export(db, out_dir: Path, ids: list[str]) -> tuple[int, list[str]]:
    """Write <id>.jpg for each id; returns (written, ids that have no annotated copy)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written, missing, unreadable = 0, [], set()
    for image_id in resolve_ids(db, ids):
        jpeg = store.annotated_jpeg(db, image_id)
        if not jpeg:
            missing.append(image_id)
            continue
        if not readable_jpeg(jpeg):  # a stored blob that does not decode is named, never written as .jpg
            log.warning("%s: its stored annotated copy is not a readable JPEG; skipped", image_id)
            missing.append(image_id)
            unreadable.add(image_id)
            continue
        (out_dir / f"{image_id}.jpg").write_bytes(jpeg)
        written += 1
    for image_id in missing:
        if image_id not in unreadable:
            log.warning("%s: no annotated copy is stored (the photo had an error?); skipped", image_id)
    return written, missing
