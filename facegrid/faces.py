"""Face detection and 128-d encodings with face_recognition (dlib).

The models are loaded when a FaceEngine is made, in the worker, never at import.
``analyse`` is the one pipeline shared by the filter, search.py and the
benchmarks, so a target photo is seen exactly as a stored photo was.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from . import imaging
from .settings import Filter

Box = tuple[int, int, int, int]  # top, right, bottom, left


@dataclasses.dataclass
class Analysis:
    decoded: imaging.Decoded
    boxes: list[Box]  # in the working image's pixels
    encodings: list[np.ndarray]
    clahe_applied: bool
    timings: dict[str, float]

    def original_boxes(self) -> list[Box]:
        """Boxes in the upright original photo's pixels."""
        d = self.decoded
        out = []
        for top, right, bottom, left in self.boxes:
            out.append((max(0, round(top / d.scale)), min(d.width, round(right / d.scale)),
                        min(d.height, round(bottom / d.scale)), max(0, round(left / d.scale))))
        return out


class FaceEngine:
    def __init__(self, conf: Filter):
        import face_recognition  # loads dlib's models: slow, so only here

        self.fr = face_recognition
        self.conf = conf

    def work_side(self) -> int:
        """The size photos are decoded at: big enough to detect on and to annotate."""
        c = self.conf
        return 0 if c.detect_max_side == 0 else max(c.detect_max_side, c.annotate_max_side)

    def detect(self, rgb: np.ndarray) -> tuple[list[Box], bool]:
        c = self.conf
        small, f = imaging.shrink(rgb, c.detect_max_side)
        clahe = c.clahe == "on" or (c.clahe == "auto" and imaging.needs_clahe(small))
        if clahe:
            small = imaging.apply_clahe(small)
        found = self.fr.face_locations(small, number_of_times_to_upsample=c.upsample, model=c.model)
        h, w = rgb.shape[:2]
        boxes = [(max(0, round(t / f)), min(w, round(r / f)), min(h, round(b / f)), max(0, round(l / f)))
                 for t, r, b, l in found]
        return sorted(boxes, key=lambda b: (b[3], b[0])), clahe

    def encode(self, rgb: np.ndarray, boxes: list[Box]) -> list[np.ndarray]:
        if not boxes:
            return []
        out = self.fr.face_encodings(rgb, known_face_locations=boxes, num_jitters=self.conf.jitters)
        return [np.asarray(e, dtype=np.float32) for e in out]

    def analyse(self, data: bytes, keepalive=lambda: None) -> Analysis:
        t0 = time.perf_counter()
        decoded = imaging.decode(data, self.work_side(), self.conf.max_pixels)
        t1 = time.perf_counter()
        keepalive()
        boxes, clahe = self.detect(decoded.rgb)
        t2 = time.perf_counter()
        keepalive()
        encodings = self.encode(decoded.rgb, boxes)
        t3 = time.perf_counter()
        timings = {"decode_ms": (t1 - t0) * 1e3, "detect_ms": (t2 - t1) * 1e3, "encode_ms": (t3 - t2) * 1e3}
        return Analysis(decoded, boxes, encodings, clahe, {k: round(v, 1) for k, v in timings.items()})
