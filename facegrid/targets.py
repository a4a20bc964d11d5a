"""Target photos: which photos, which face in each, and its encoding (search.py, watches, the web page).

Target photos go through exactly the filter's pipeline (faces.FaceEngine), so a
target is decoded, oriented, scaled and encoded as the stored photos were. Two
things are done for targets only, where a user hands over a few photos and
expects each to count:

- A photo in which no face is found is scanned once more at twice the size, when
  that costs no more than scanning a photo of the usual size (RETRY_SIDE): small
  or distant faces are the ones HOG misses.
- A photo with several faces gives its main face, when one face is both clearly
  the largest (MAIN_FACE_AREA) and the nearest the photo's centre: the person the
  photo was taken of, with someone else at the edge. Such a face is "picked": it
  is left out when the photos with a single face show someone else (agreeing).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
from pathlib import Path

import numpy as np

from . import imaging, scoring
from .candidate_scan import Box
from .errors import ImageUnreadable, UsageError
from .faces import FaceEngine
from .walking import display_path, walk

log = logging.getLogger("facegrid.search")

MAIN_FACE_AREA = 1.3  # the main face's box has at least this times the area of every other face's
RETRY_SIDE = 2048  # a retry's upsampled picture at most this many pixels a side: a 1,024 px photo's usual scan
MAX_UPSAMPLE = 3  # as filter.upsample allows


@dataclasses.dataclass
class Target:
    path: str
    id: str
    encoding: np.ndarray
    crop: bytes
    picked: bool = False  # the main face of a photo with several (main_face)


def target_files(target: str) -> list[str]:
    """The target photos: every photo in a folder (walked as the queuer walks), or one photo file."""
    if os.path.isfile(target):
        with open(target, "rb") as f:
            head = f.read(64)
        if imaging.sniff(head) is None:
            raise UsageError(f"{target}: not a photo; pass a photo of the person, or a folder of them")
        return [target]
    if not os.path.isdir(target):
        raise UsageError(
            f"{target}: no such photo or folder; pass a photo of the person, or a folder of them, "
            "as in search.py target/"
        )
    # the queuer's own walk: the same photos, links followed once and only inside the folder
    files = sorted(walk([target], lambda path, why: log.warning("%s: %s", display_path(path), why)))
    if not files:
        raise UsageError(f"{target}: no photos (.jpg .png .webp .tif .bmp .heic) in it; add photos of the person")
    return files


def encode_targets(engine: FaceEngine, folder: str, mixed_distance: float = 0.0, mirror: bool = True) -> list[Target]:
    """One encoding per target photo; photos without a face, or with several and no main one, are
    named and left out.

    With mirror, a target face's encoding is the mean of the photo's and its mirror
    image's: measured on lfw-dev, it finds more of the person at the same precision
    (docs/search.md). Stored faces are encoded from the photo alone, as face_recognition does.

    Target photos that fall into more than one group at mixed_distance (0: no
    check) show different people: the search is refused, naming the groups.
    """
    photos = ((display_path(path), Path(path).read_bytes()) for path in target_files(folder))
    return encode_photos(engine, photos, folder, mixed_distance, mirror)


def encode_photos(
    engine: FaceEngine, photos, where: str, mixed_distance: float = 0.0, mirror: bool = True
) -> list[Target]:
    """encode_targets for (name, bytes) pairs from anywhere (a folder, a web form); `where` names
    them in the refusals ("target/: no photo with a face; ...")."""
    targets = []
    for name, data in photos:
        target, why = encode_target(engine, name, data, mirror)
        if why:
            log.warning("%s: %s", name, why)
        if target is not None:
            targets.append(target)
    if not targets:
        raise UsageError(f"{where}: no photo with one clear face; add a clear photo of the person")
    targets, left_out = agreeing(targets, mixed_distance)
    for t in left_out:
        log.warning("%s: its main face is not the person of the other photos; left out of the profile", t.path)
    if mixed_distance > 0:
        check_one_person(where, targets, mixed_distance)
    return targets


def encode_target(engine: FaceEngine, path: str, data: bytes, mirror: bool = True) -> tuple[Target | None, str]:
    """One target photo's Target (or None), and what to tell the user about it ("" when nothing)."""
    try:
        a = engine.analyse(data)
        again = None if a.boxes else retry_upsample(engine, a)
        if again is not None:
            a = engine.analyse(data, upsample=again)
    except ImageUnreadable as exc:
        return None, f"{exc}; left out of the profile"
    if not a.boxes:
        return None, "no face found; left out of the profile (use a photo where the face is larger)"
    h, w = a.decoded.rgb.shape[:2]
    which = 0 if len(a.boxes) == 1 else main_face(a.boxes, w, h)
    if which is None:
        return None, f"{len(a.boxes)} faces found and none is the main one; left out of the profile (crop it)"
    box = a.boxes[which]
    crop = imaging.jpeg(imaging.crop(a.decoded.rgb, box, engine.conf.crop_size), 85)
    encoding = a.encodings[which]
    if mirror:
        encoding = (encoding + engine.encode_mirrored(a.decoded.rgb, box)) / 2
    target = Target(path, hashlib.sha256(data).hexdigest(), encoding, crop, picked=len(a.boxes) > 1)
    note = f"{len(a.boxes)} faces found; the largest, nearest the centre, is used (crop it to choose)"
    return target, note if target.picked else ""


def retry_upsample(engine: FaceEngine, a) -> int | None:
    """The upsampling of a second scan for a photo with no face found (twice the first's size), or
    None where that scan would be larger than RETRY_SIDE or the upsampling at its most."""
    side = max(a.decoded.rgb.shape[:2])
    if engine.conf.detect_max_side:
        side = min(side, engine.conf.detect_max_side)
    up = a.upsample + 1
    return up if up <= MAX_UPSAMPLE and side * 2**up <= RETRY_SIDE else None


def main_face(boxes: list[Box], width: int, height: int) -> int | None:
    """The index of the photo's main face: the largest, by MAIN_FACE_AREA over every other, and the
    nearest the centre; None when no face is both."""
    areas = np.array([(r - left) * (b - t) for t, r, b, left in boxes], dtype=np.float64)
    off = np.array([np.hypot((r + left) / 2 - width / 2, (t + b) / 2 - height / 2) for t, r, b, left in boxes])
    largest = int(np.argmax(areas))
    others = np.delete(areas, largest)
    if areas[largest] < MAIN_FACE_AREA * others.max() or int(np.argmin(off)) != largest:
        return None
    return largest


def agreeing(targets: list[Target], distance: float) -> tuple[list[Target], list[Target]]:
    """(kept, left out): a picked face farther than distance from every photo with a single face shows
    someone else (the photo's main subject is not the person searched for) and is left out."""
    sure = [t.encoding for t in targets if not t.picked]
    if distance <= 0 or not sure or len(sure) == len(targets):
        return targets, []
    rows = np.stack(sure)
    kept: list[Target] = []
    left_out: list[Target] = []
    for t in targets:
        ok = not t.picked or float(np.min(np.linalg.norm(rows - t.encoding, axis=1))) <= distance
        (kept if ok else left_out).append(t)
    return kept, left_out


def check_one_person(folder: str, targets: list[Target], distance: float) -> None:
    found = scoring.groups(np.stack([t.encoding for t in targets]), distance)
    if len(found) > 1:
        listed = " | ".join(", ".join(Path(targets[i].path).name for i in g) for g in found)
        raise UsageError(
            f"{folder}: the target photos show {len(found)} different people ({listed}); "
            "put each person's photos in a folder of their own and search for each "
            f"(or raise --set search.mixed_distance={distance:g} if they are one person)"
        )
