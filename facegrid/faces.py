"""Face detection and 128-d encodings with dlib, as face_recognition makes them.

The models are loaded when a FaceEngine is made, in the worker, never at import.
Only the three models the pipeline uses are loaded (HOG detector, 5-point
landmarks, ResNet encoder; the CNN detector only for model = cnn), not the five
``import face_recognition`` loads: the boxes and encodings are the same
(tests/test_encoder.py), a worker starts faster and holds less memory.
``analyse`` is the one pipeline shared by the filter, search.py and the
benchmarks, so a target photo is seen exactly as a stored photo was.
With filter.proposals = yuface, HOG scores windows only around candidate faces that
libfacedetection's small CNN finds, on the full scan's own pyramid levels, and keeps
them as the full scan does: the same boxes (hog_around_candidates; docs/benchmarks.md).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import logging
import os
import time
from collections.abc import Iterator

import numpy as np

from . import imaging, resize
from .candidate_scan import (
    LEVELS_ABOVE,
    Box,
    Window,
    level_crops,
    level_scan,
    picture_boxes,
    plan_candidates,
    score_crops,
    suppress,
)
from .errors import ConfigError
from .settings import Filter, cache_dir

# filter.proposals = yuface: candidates below this score (yuface's 0-100) are dropped. 30
# keeps every face the full HOG scan finds on the measured sets (docs/benchmarks.md).
PROPOSAL_MIN_SCORE = 30
# Copies up to this size are scanned whole: HOG on them costs less than the candidates.
SCAN_WHOLE_SIDE = 320


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
        if build.get("yuface"):
            text += (
                f", only around candidate faces found by libfacedetection (yuface {build['yuface']}) "
                f"on a copy of at most {conf.proposal_side} px (the full scan's boxes)"
            )
            if build.get("resize_off"):
                text += f"; pyramid levels by dlib ({build['resize_off']})"
        else:
            text += f", whole pictures ({build.get('proposals_off', 'the candidate finder is not set up')})"
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


def model_file(name: str) -> str:
    """A model file of the face_recognition_models package (the files face_recognition uses),
    found without importing the package, whose import loads pkg_resources (slow: docs/benchmarks.md,
    "Start-up")."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("the face_recognition_models package is not installed; run scripts/setup.sh")
    path = os.path.join(list(spec.submodule_search_locations)[0], "models", name)
    if not os.path.isfile(path):
        raise ConfigError(f"model file {path} is missing; run scripts/setup.sh to install it again")
    return path


def frontal_detector(dlib):
    """dlib's frontal HOG face detector, as get_frontal_face_detector makes it. dlib builds it
    from text compiled into the library, far slower than its saved form loads (docs/benchmarks.md,
    "Start-up"), so a copy is kept in the cache folder, one per dlib version. A copy that does not load is made again; a
    cache folder that cannot be written only costs the time."""
    path = cache_dir() / f"frontal-face-detector-dlib-{dlib.__version__}.svm"
    try:
        return dlib.fhog_object_detector(str(path))
    except RuntimeError:  # not there yet, or damaged
        pass
    hog = dlib.get_frontal_face_detector()
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        hog.save(str(tmp))
        os.replace(tmp, path)
    except (OSError, RuntimeError):
        with contextlib.suppress(OSError):
            tmp.unlink()
    return hog


class FaceEngine:
    def __init__(self, conf: Filter):
        self.build = dlib_build()  # sets OPENBLAS_NUM_THREADS before dlib is loaded
        import dlib

        self.dlib, self.conf = dlib, conf
        self._cnn = None
        self._propose = None
        self.pyr6, self.pyr2 = dlib.pyramid_down(6), dlib.pyramid_down(2)
        self.hog = frontal_detector(dlib)
        self.around = False  # HOG only around candidate faces (filter.proposals = yuface)
        self.resize: resize.Resizer | None = None  # dlib's resize_image, faster, for the pyramid levels
        self.landmarks = dlib.shape_predictor(model_file("shape_predictor_5_face_landmarks.dat"))
        self.encoder = dlib.face_recognition_model_v1(model_file("dlib_face_recognition_resnet_model_v1.dat"))
        if conf.model == "cnn":
            self.cnn()
        if conf.proposals == "yuface" and conf.model == "hog":
            try:
                self.proposer()
                self.level_scan = level_scan(dlib, self.hog)
                self.around = True
                self.resize, why = resize.resizer_for(dlib)
                if self.resize is None:
                    self.build["resize_off"] = why
                    logging.getLogger(__name__).info("pyramid levels made by dlib (%s)", why)
            except (ImportError, ValueError) as e:  # no yuface wheel here, or another dlib
                self.build.pop("yuface", None)
                self.build["proposals_off"] = "filter.proposals = yuface, but the candidate finder is not set up"
                logging.getLogger(__name__).warning(
                    "filter.proposals = yuface, but %s: scanning whole pictures (the same boxes, slower)", e
                )

    def describe(self) -> str:
        return describe_build(self.build, self.conf)

    def cnn(self):
        if self._cnn is None:
            self._cnn = self.dlib.cnn_face_detection_model_v1(model_file("mmod_human_face_detector.dat"))
        return self._cnn

    def proposer(self):
        """libfacedetection's CNN (weights inside the yuface wheel): BGR image -> rows of
        score, x, y, w, h, 5 landmarks."""
        if self._propose is None:
            os.environ.setdefault("OMP_NUM_THREADS", "1")  # one worker per core
            import importlib.metadata as md

            try:
                from yuface import yuface
            except ImportError as e:
                raise ImportError(
                    f"the yuface package does not load ({e}; scripts/setup.sh installs it where it has wheels)"
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

    def pyramid(self, rgb: np.ndarray, upsample: int, top_level: int) -> Iterator[tuple[int, np.ndarray]]:
        """The full scan's pyramid levels 0..top_level, pixel for pixel, one at a time: dlib's
        pyramid_up (`upsample` times), then pyramid_down<6> from each level to the next, over the
        whole picture (each resize depends on the whole picture's size: a crop would differ).
        Both are dlib's resize_image to the level's size, made by facegrid/resize.c where it
        gives dlib's pixels (about twice as fast), else by dlib."""
        sized = self.resize or self.dlib.resize_image  # the same pixels (resize.resizer_for checks)
        img = np.ascontiguousarray(rgb)
        for _ in range(upsample):
            r = self.pyr2.rect_up(self.dlib.rectangle(0, 0, img.shape[1] - 1, img.shape[0] - 1))
            img = sized(img, r.bottom() + 1, r.right() + 1)
        count = self.level_count(img.shape[1], img.shape[0])
        for j in range(min(top_level + 1, count)):
            yield j, img
            if j + 1 < min(top_level + 1, count):
                img = sized(img, 5 * img.shape[0] // 6, 5 * img.shape[1] // 6)  # pyramid_down<6>

    def level_count(self, width: int, height: int) -> int:
        """How many pyramid levels dlib's scanner makes for a picture this size."""
        rect, n = self.dlib.rectangle(0, 0, width - 1, height - 1), 0
        while True:
            rect, n = self.pyr6.rect_down(rect), n + 1
            if rect.width() < self.level_scan.min_side or rect.height() < self.level_scan.min_side:
                return n

    def hog_around_candidates(self, rgb: np.ndarray, upsample: int) -> list[Box]:
        """The full scan's boxes, with HOG run only around candidate faces.

        dlib's full scan upsamples the picture, makes a pyramid (5/6 per level), scores every
        80x80 window of every level (8 px cells) and keeps the best-scoring window among
        overlapping ones. Here the levels are made the same way (pyramid: the same pixels),
        but scored only in crops around each candidate, at the levels where its face can be
        found: a crop whose corner sits on a cell corner gives the full scan's features, and
        so its windows, away from the crop's edges (CROP_MARGIN). The windows kept are then
        suppressed as dlib does (its own overlap test, by score), so the boxes are the full
        scan's: every face the full scan finds near a candidate, with the very same box."""
        plans = plan_candidates(self.candidates(rgb), upsample)
        if not plans:
            return []
        windows: dict[Window, float] = {}
        for j, img in self.pyramid(rgb, upsample, max(p[3] for p in plans) + LEVELS_ABOVE):
            score_crops(self.level_scan, img, j, level_crops(plans, j, img.shape[1], img.shape[0]), windows)
        kept = suppress(self.dlib, self.pyr6, self.level_scan, windows)
        h, w = rgb.shape[:2]
        return picture_boxes(self.dlib, self.pyr2, kept, upsample, w, h)

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

    def detect(self, rgb: np.ndarray, original_side: int = 0, upsample: int | None = None) -> tuple[list[Box], bool]:
        """Boxes in rgb's pixels; original_side is the photo's longest side (default: rgb's); upsample:
        this many times instead of upsample_for's."""
        c = self.conf
        small, f = imaging.shrink(rgb, c.detect_max_side)
        clahe = c.clahe == "on" or (c.clahe == "auto" and imaging.needs_clahe(small))
        if clahe:
            small = imaging.apply_clahe(small)
        if upsample is None:
            upsample = self.upsample_for(original_side or max(rgb.shape[:2]))
        if c.model == "hog" and self.around and max(small.shape[:2]) > SCAN_WHOLE_SIDE:
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

    def encode_mirrored(self, rgb: np.ndarray, box: Box) -> np.ndarray:
        """The encoding of the same face in the mirror image (for target photos: docs/search.md)."""
        top, right, bottom, left = box
        width = rgb.shape[1]
        return self.encode(np.ascontiguousarray(rgb[:, ::-1]), [(top, width - 1 - left, bottom, width - 1 - right)])[0]

    def analyse(self, data: bytes, keepalive=lambda: None, upsample: int | None = None) -> Analysis:
        """Decode, detect and encode one photo (upsample: as detect's)."""
        t0 = time.perf_counter()
        decoded = imaging.decode(data, self.work_side(), self.conf.max_pixels)
        t1 = time.perf_counter()
        keepalive()
        side = max(decoded.width, decoded.height)
        boxes, clahe = self.detect(decoded.rgb, side, upsample)
        t2 = time.perf_counter()
        keepalive()
        encodings = self.encode(decoded.rgb, boxes)
        t3 = time.perf_counter()
        timings = {"decode_ms": (t1 - t0) * 1e3, "detect_ms": (t2 - t1) * 1e3, "encode_ms": (t3 - t2) * 1e3}
        return Analysis(
            decoded,
            boxes,
            encodings,
            clahe,
            {k: round(v, 1) for k, v in timings.items()},
            self.upsample_for(side) if upsample is None else upsample,
        )
