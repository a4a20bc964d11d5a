"""search.py's work: target photos -> profile -> ranked matches -> files.

Target photos go through exactly the filter's pipeline (faces.FaceEngine), so
a target is decoded, oriented, scaled and encoded as the stored photos were.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np

from . import imaging, outfiles, store
from . import index as index_mod
from .errors import ImageUnreadable, UsageError
from .faces import FaceEngine
from .queuing import EXTENSIONS, display_path
from .settings import Settings
from .textsafe import csv_cell, printable

log = logging.getLogger("facegrid.search")


@dataclasses.dataclass
class Target:
    path: str
    id: str
    encoding: np.ndarray
    crop: bytes


@dataclasses.dataclass
class Match:
    rank: int
    distance: float
    image_id: str
    face_index: int
    path: str
    host: str
    box: tuple[int, int, int, int]
    confidence: str
    file: str = ""  # the annotated copy written to --out, relative to it

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["box"] = {"top": self.box[0], "right": self.box[1], "bottom": self.box[2], "left": self.box[3]}
        d["distance"] = round(self.distance, 4)
        return d


def confidence(distance: float, tolerance: float) -> str:
    if distance <= tolerance * 0.8:
        return "strong"
    return "likely" if distance <= tolerance * 0.92 else "weak"


def target_files(folder: str) -> list[str]:
    if not os.path.isdir(folder):
        raise UsageError(f"{folder}: not a folder; put one or more photos of the person in a folder "
                         "and pass it, as in search.py target/")
    files = sorted(str(p) for p in Path(folder).rglob("*") if p.suffix.lower() in EXTENSIONS and p.is_file())
    if not files:
        raise UsageError(f"{folder}: no photos (.jpg .png .webp .tif .bmp) in it; add photos of the person")
    return files


def encode_targets(engine: FaceEngine, folder: str) -> list[Target]:
    """One encoding per target photo; photos with no face or several are named and left out."""
    targets = []
    for path in target_files(folder):
        data = Path(path).read_bytes()
        try:
            a = engine.analyse(data)
        except ImageUnreadable as exc:
            log.warning("%s: %s; left out of the profile", display_path(path), exc)
            continue
        if len(a.boxes) != 1:
            what = "no face found" if not a.boxes else f"{len(a.boxes)} faces found"
            log.warning("%s: %s; left out of the profile (use photos with exactly one face, or crop them)",
                        display_path(path), what)
            continue
        crop = imaging.jpeg(imaging.crop(a.decoded.rgb, a.boxes[0], engine.conf.crop_size), 85)
        targets.append(Target(display_path(path), hashlib.sha256(data).hexdigest(), a.encodings[0], crop))
    if not targets:
        raise UsageError(f"{folder}: no photo with exactly one face; add a clear photo of the person")
    return targets


def find(db, db_path: str, targets: list[Target], tolerance: float, mode: str, limit: int = 0) -> list[Match]:
    """Stored faces within tolerance of the profile, best face per photo, ranked."""
    idx = index_mod.load(db, db_path)
    if not len(idx):
        return []
    dist = idx.distances(np.stack([t.encoding for t in targets]), mode)
    hits = np.flatnonzero(dist <= tolerance)
    hits = hits[np.argsort(dist[hits], kind="stable")]
    target_ids = {t.id for t in targets}
    matches: list[Match] = []
    seen: set[str] = set()
    rows = _face_rows(db, [int(idx.rowids[i]) for i in hits])
    for i in hits:
        row = rows.get(int(idx.rowids[i]))
        if row is None or row["image_id"] in seen or row["image_id"] in target_ids:
            continue
        seen.add(row["image_id"])
        d = float(dist[i])
        matches.append(Match(len(matches) + 1, d, row["image_id"], row["idx"], row["path"], row["host"],
                             (row["top"], row["right"], row["bottom"], row["left"]), confidence(d, tolerance)))
        if limit and len(matches) >= limit:
            break
    return matches


def _face_rows(db, rowids: list[int]) -> dict[int, dict]:
    out = {}
    for start in range(0, len(rowids), 500):
        part = rowids[start:start + 500]
        sql = ("SELECT f.rowid AS rowid, f.image_id, f.idx, f.top, f.right, f.bottom, f.left, i.path, i.host "
               f"FROM faces f JOIN images i ON i.id = f.image_id WHERE f.rowid IN ({','.join('?' * len(part))})")
        for row in db.query(sql, part):
            out[row["rowid"]] = row
    return out


def write_outputs(db, matches: list[Match], targets: list[Target], out_dir: Path, settings: Settings) -> None:
    """Annotated copies named only from rank and id, report.csv and report.html.

    The previous run's files in out_dir go first, and only those (outfiles.py).
    """
    from . import report

    written = outfiles.Written(out_dir)
    written.clear_previous()
    for m in matches:
        row = db.execute("SELECT jpeg FROM annotated WHERE image_id = ?", [m.image_id]).fetchone()
        if row and row[0]:
            if not report.readable_jpeg(row[0]):
                log.warning("%s (photo %s): its stored annotated copy is not a readable JPEG; no copy made",
                            m.path, m.image_id)
                continue
            m.file = written.add(f"{m.rank:04d}-{m.image_id[:16]}.jpg")
            (out_dir / m.file).write_bytes(row[0])
    with open(out_dir / written.add("report.csv"), "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["rank", "distance", "confidence", "path", "host", "top", "right", "bottom", "left",
                    "image_id", "face_index", "file"])
        for m in matches:
            w.writerow([csv_cell(v) for v in (m.rank, f"{m.distance:.4f}", m.confidence, m.path, m.host, *m.box,
                                              m.image_id, m.face_index, m.file)])
    report.write_match_report(db, matches, targets, out_dir, settings)
    written.add("report.html")
    written.save()


def as_json(matches: list[Match], targets: list[Target], settings: Settings, out_dir: Path) -> str:
    return json.dumps({
        "matches": [m.as_dict() for m in matches],
        "targets": [t.path for t in targets],
        "tolerance": settings.search.tolerance, "mode": settings.search.mode, "out": str(out_dir),
    }, indent=2)


def print_table(matches: list[Match]) -> None:
    if not matches:
        return
    print(f"{'rank':>4}  {'distance':>8}  {'confidence':<10}  {'host':<12}  {'box (t,r,b,l)':<22}  path")
    for m in matches:
        box = ",".join(map(str, m.box))
        print(f"{m.rank:>4}  {m.distance:8.4f}  {m.confidence:<10}  {printable(m.host)[:12]:<12}  {box:<22}  "
              f"{printable(m.path)}")


def open_store(db_path: str):
    """Read-only: search never changes the database, and refuses one that is not facegrid's."""
    return store.open_readonly(db_path)
