"""HOG scored only around candidate faces, with the full scan's boxes (filter.proposals = yuface).

dlib's frontal detector is copied to score one pyramid level and keep every window
(level_scan); FaceEngine.hog_around_candidates then plans, around each candidate, the levels
and crops where its face can be found (plan_candidates, level_crops), keeps the windows away
from the crops' edges (score_crops) and suppresses them as dlib does (suppress), so the boxes
are the ones the full scan gives. The arithmetic is the full scan's: see docs/benchmarks.md.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any

import numpy as np

Box = tuple[int, int, int, int]  # top, right, bottom, left
Plan = tuple[float, float, float, int]  # centre x, centre y, box width (upsampled picture), level
Crop = tuple[int, int, int, int]  # left, top, right, bottom (exclusive) in a level's pixels
Window = tuple[int, int, int, int, int, int]  # level, left, top, right, bottom, detector

# dlib's frontal HOG detector: 8 px cells; its boxes are 73 px wide at pyramid level 0.
HOG_CELL, BOX_WIDTH = 8, 73
# Around each candidate (hog_around_candidates): its HOG box is about this many times its
# width; the levels scanned are the level of that width, LEVELS_BELOW below it and
# LEVELS_ABOVE above (the full scan's boxes were 2 below to 1 above on the labelled photos);
# a crop reaches CROP_REACH times the larger of the box and the window from the candidate's
# centre, plus CROP_MARGIN px where windows are not kept (fHOG's gradients and block
# normalisation need about 2 cells beyond a window to equal the full scan's).
CANDIDATE_TO_BOX, LEVELS_BELOW, LEVELS_ABOVE, CROP_REACH, CROP_MARGIN = 0.76, 2, 2, 1.0, 24
# A level whose crops add up to this share of it is scored whole, once.
WHOLE_LEVEL_SHARE = 0.6


@dataclasses.dataclass
class LevelScan:
    """dlib's frontal face detector made to score one pyramid level and keep every window
    (no suppression), with the overlap test the full detector suppresses windows by."""

    detector: Any  # dlib.fhog_object_detector
    match: float  # boxes overlap: intersection / bounding box of both above this,
    covered: float  # or intersection / either box above this
    min_side: int  # the scanner's smallest pyramid level (pixels)

    def overlaps(self, a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
        """dlib's test_box_overlap on (left, top, right, bottom), inclusive."""

        def area(left, top, right, bottom):
            return max(0, right - left + 1) * max(0, bottom - top + 1)

        inner = area(max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3]))
        if inner == 0:
            return False
        outer = area(min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))
        return inner / outer > self.match or inner / area(*a) > self.covered or inner / area(*b) > self.covered


def _int_at(data: bytes, i: int) -> tuple[int, int]:
    """dlib's serialized integer: a byte with the length (and 0x80 for negative), then little-endian bytes."""
    n = data[i] & 0x0F
    value = int.from_bytes(data[i + 1 : i + 1 + n], "little")
    return (-value if data[i] & 0x80 else value), i + 1 + n


def _int_bytes(value: int) -> bytes:
    n = max(1, (abs(value).bit_length() + 7) // 8)
    return bytes([n | (0x80 if value < 0 else 0)]) + abs(value).to_bytes(n, "little")


def _double_at(data: bytes, i: int) -> tuple[float, int]:
    """dlib's serialized double: mantissa and exponent, two integers."""
    mantissa, i = _int_at(data, i)
    exponent, i = _int_at(data, i)
    return math.ldexp(mantissa, exponent), i


def level_scan(dlib, hog) -> LevelScan:
    """One-level, every-window copy of `hog` (object_detector<scan_fhog_pyramid<pyramid_down<6>>>),
    made by rewriting two fields of its serialized form: the scanner's max_pyramid_levels (to 1)
    and the overlap test (to 1.0, 1.0: nothing overlaps). Raises ValueError if the layout is not
    the one expected (another dlib), and the caller scans whole pictures instead."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "frontal.svm")
        hog.save(path)
        with open(path, "rb") as fh:
            data = fh.read()
        i, head = 0, []
        # object_detector version, scanner version, feature extractor, feature pyramid,
        # cell size, padding, window width, window height
        for _ in range(8):
            value, i = _int_at(data, i)
            head.append(value)
        if head[0] != 2 or head[1] != 1 or head[4] != HOG_CELL or head[6:8] != [80, 80]:
            raise ValueError(f"unexpected dlib detector layout {head}")
        at_levels = i
        _, i = _int_at(data, i)  # max_pyramid_levels
        min_width, i = _int_at(data, i)
        min_height, i = _int_at(data, i)
        _, i = _double_at(data, i)  # nuclear norm regularisation
        _, i = _int_at(data, i)  # dimensions
        at_overlap = i
        match, i = _double_at(data, i)
        covered, i = _double_at(data, i)
        detectors, _ = _int_at(data, i)
        if not (0 < match <= 1 and 0 < covered <= 1 and detectors == hog.num_detectors):
            raise ValueError(f"unexpected dlib overlap test {match}, {covered}, {detectors}")
        _, after_levels = _int_at(data, at_levels)
        one = _int_bytes(1) + _int_bytes(0)  # 1.0 = 1 * 2**0
        patched = data[:at_levels] + _int_bytes(1) + data[after_levels:at_overlap] + one + one + data[i:]
        with open(path, "wb") as fh:
            fh.write(patched)
        detector = dlib.fhog_object_detector(path)
    return LevelScan(detector, match, covered, min(min_width, min_height))


def plan_candidates(candidates: list[tuple[float, float, float, float]], upsample: int) -> list[Plan]:
    """Where to look for each candidate (x, y, w, h): its centre and box width in the upsampled
    picture, and the pyramid level at which that box is the detector's."""
    up = 2**upsample
    plans = []
    for x, y, cw, ch in candidates:
        side = max(cw, ch) * up * CANDIDATE_TO_BOX  # the box's width in the upsampled picture
        guess = round(math.log(max(side, 1.0) / BOX_WIDTH) / math.log(1.2))
        plans.append(((x + cw / 2) * up, (y + ch / 2) * up, side, guess))
    return plans


def level_crops(plans: list[Plan], j: int, big_w: int, big_h: int) -> list[Crop]:
    """The crops of level j (big_w x big_h px) to score: one around each candidate whose face can
    be found at this level, its corner on a cell corner; the whole level if they would cover most of it."""
    f = (5 / 6) ** j
    crops = []
    for cx, cy, side, guess in plans:
        if not guess - LEVELS_BELOW <= j <= guess + LEVELS_ABOVE:
            continue
        reach = max(side * f, BOX_WIDTH) * CROP_REACH + CROP_MARGIN
        x0 = max(0, int(cx * f - reach)) // HOG_CELL * HOG_CELL
        y0 = max(0, int(cy * f - reach)) // HOG_CELL * HOG_CELL
        x1, y1 = min(big_w, math.ceil(cx * f + reach)), min(big_h, math.ceil(cy * f + reach))
        if x1 - x0 >= BOX_WIDTH and y1 - y0 >= BOX_WIDTH:
            crops.append((x0, y0, x1, y1))
    if sum((x1 - x0) * (y1 - y0) for x0, y0, x1, y1 in crops) >= WHOLE_LEVEL_SHARE * big_w * big_h:
        crops = [(0, 0, big_w, big_h)]  # crops would cover most of it: score the level once
    return crops


def score_crops(scan: LevelScan, img: np.ndarray, j: int, crops: list[Crop], windows: dict[Window, float]) -> None:
    """Score every window of each crop of level j (img) and keep in windows, by their place in the
    level, those away from the crop's edges (where they are the full scan's), each at its best score."""
    big_h, big_w = img.shape[:2]
    for x0, y0, x1, y1 in crops:
        rects, scores, kinds = scan.detector.run(np.ascontiguousarray(img[y0:y1, x0:x1]), 0, 0.0)
        for r, score, kind in zip(rects, scores, kinds, strict=True):
            inside = (
                (x0 == 0 or r.left() >= CROP_MARGIN)
                and (y0 == 0 or r.top() >= CROP_MARGIN)
                and (x1 == big_w or x1 - x0 - 1 - r.right() >= CROP_MARGIN)
                and (y1 == big_h or y1 - y0 - 1 - r.bottom() >= CROP_MARGIN)
            )
            if inside:
                key = (j, r.left() + x0, r.top() + y0, r.right() + x0, r.bottom() + y0, kind)
                windows[key] = max(score, windows.get(key, score))


def suppress(dlib, pyr6, scan: LevelScan, windows: dict[Window, float]) -> list[tuple[int, int, int, int]]:
    """dlib's suppression: windows best score first, each mapped to level 0 and kept unless it
    overlaps one kept before (its own overlap test). Gives (left, top, right, bottom) boxes."""
    kept: list[tuple[int, int, int, int]] = []
    for (j, left, top, right, bottom, _), _score in sorted(windows.items(), key=lambda kv: -kv[1]):
        r = dlib.rectangle(left, top, right, bottom)
        r = pyr6.rect_up(r, j) if j else r
        box = (r.left(), r.top(), r.right(), r.bottom())
        if not any(scan.overlaps(box, other) for other in kept):
            kept.append(box)
    return kept


def picture_boxes(dlib, pyr2, kept: list[tuple[int, int, int, int]], upsample: int, w: int, h: int) -> list[Box]:
    """Kept boxes (left, top, right, bottom in the upsampled picture) as face_locations gives them:
    brought down `upsample` times and clipped to the w x h picture."""
    boxes: list[Box] = []
    for left, top, right, bottom in kept:
        r = dlib.rectangle(left, top, right, bottom)
        for _ in range(upsample):
            r = pyr2.rect_down(r)
        boxes.append((max(r.top(), 0), min(r.right(), w), min(r.bottom(), h), max(r.left(), 0)))
    return boxes
