"""dlib's bilinear resize_image for RGB pictures, pixel for pixel, about twice as fast.

The candidate route (faces.FaceEngine.hog_around_candidates) must see the full
scan's own pyramid levels: dlib's pyramid_up, then pyramid_down<6> (a resize to
5/6, rounded down) from each level to the next. dlib makes them with
resize_image, which samples each output pixel's four neighbours with weights
stepped in float lanes four columns at a time and its last columns in double.
Making a level took about half of the detection time per photo.

Here a Plan holds, for one (input size, output size), every output row's and
column's source pixels and weights, computed in NumPy with dlib's arithmetic
(the same float and double steps, in the same order), and a small C kernel
(facegrid/resize.c) does the per-pixel work with them. The kernel is compiled
on first use with the system's C compiler into the cache folder, one file per
source, compiler and CPU. A dlib compiled with FMA contraction (as
scripts/build-dlib.sh builds it) rounds some sums once instead of twice; which
of the two a dlib does is found by comparing with its own resize_image, and the
kernel is used only when one of them gives dlib's every pixel on the check
pictures. Otherwise (no compiler, another dlib) resizer_for says why and the
engine keeps calling dlib.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np

from .settings import cache_dir

log = logging.getLogger(__name__)
SOURCE = Path(__file__).with_name("resize.c")
FLAGS = ["-O3", "-march=native", "-ffp-contract=off", "-shared", "-fPIC"]  # no contraction: the kernel decides
CHECKS = ((61, 83, 123, 167), (95, 70, 79, 58), (200, 301, 166, 250), (37, 45, 75, 91))  # in rows, cols -> out


def _fma(a: float, b: float, c: float) -> float:
    """a * b + c rounded once (exact rationals), as a fused multiply-add."""
    return float(Fraction(a) * Fraction(b) + Fraction(c))


@dataclasses.dataclass
class Plan:
    """Where each output pixel of one resize reads, and with which weights (dlib's arithmetic)."""

    rows: int
    cols: int
    simd: int  # columns before this take dlib's four-lane float path, the rest its double path
    top: np.ndarray  # int64, per output row
    bottom: np.ndarray
    itb: np.ndarray  # float32 1 - row fraction
    tbf: np.ndarray  # float32 row fraction
    tb: np.ndarray  # float64 row fraction
    left: np.ndarray  # int64, per output column
    right: np.ndarray
    ilr: np.ndarray  # float32 1 - column fraction (float path)
    lr: np.ndarray  # float32 column fraction (float path)
    q: np.ndarray  # float64 column fraction (double path)


@functools.lru_cache(maxsize=128)
def plan(in_rows: int, in_cols: int, rows: int, cols: int, fused: bool) -> Plan:
    """dlib's resize_image(in, out, interpolate_bilinear) for rgb_pixel, as index and weight arrays."""
    s = (in_rows - 1) / max(rows - 1, 1)
    y = np.cumsum(np.concatenate([[-s], np.full(rows, s)]))[1:]  # y += y_scale, one row at a time
    top = np.floor(y).astype(np.int64)
    bottom = np.minimum(top + 1, in_rows - 1)
    tb = y - top
    s = (in_cols - 1) / max(cols - 1, 1)
    x0 = -4 * s
    lane3 = _fma(3, s, x0) if fused else x0 + 3 * s
    groups = cols // 4 + 2
    steps = np.empty((groups + 1, 4), dtype=np.float32)
    steps[0] = np.array([x0, x0 + s, x0 + 2 * s, lane3]).astype(np.float32)
    steps[1:] = np.float32(4 * s)
    xs = np.cumsum(steps, axis=0, dtype=np.float32)[1:]  # four float lanes, stepped in float
    left = xs.astype(np.int64)
    fits = left[:, 3] + 1 < in_cols  # the float path stops at the first group reading past the edge
    simd = min((groups if fits.all() else int(np.argmin(fits))) * 4, cols)
    xs, left = xs.reshape(-1)[:simd], left.reshape(-1)[:simd]
    start = _fma(simd, s, -s) if fused else -s + simd * s
    xt = np.cumsum(np.concatenate([[start], np.full(cols - simd, s)]))[1:]  # x += x_scale, in double
    tail = np.floor(xt).astype(np.int64)
    lr = (xs - left.astype(np.float32)).astype(np.float32)
    return Plan(
        rows=rows,
        cols=cols,
        simd=simd,
        top=top,
        bottom=bottom,
        itb=(1 - tb).astype(np.float32),
        tbf=tb.astype(np.float32),
        tb=tb,
        left=np.concatenate([left, tail]),
        right=np.concatenate([left + 1, np.minimum(tail + 1, in_cols - 1)]),
        ilr=(np.float32(1) - lr).astype(np.float32),
        lr=lr,
        q=xt - tail,
    )


class Resizer:
    """resize(img, rows, cols) -> dlib.resize_image(img, rows, cols), by the kernel."""

    def __init__(self, lib: ctypes.CDLL, fused: bool):
        self.lib, self.fused = lib, fused

    def __call__(self, img: np.ndarray, rows: int, cols: int) -> np.ndarray:
        img = np.ascontiguousarray(img, dtype=np.uint8)
        if img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"an RGB picture is needed, not shape {img.shape}")
        p = plan(img.shape[0], img.shape[1], rows, cols, self.fused)
        out = np.empty((rows, cols, 3), dtype=np.uint8)
        ptr = ctypes.c_void_p
        self.lib.fg_resize(
            img.ctypes.data_as(ptr),
            img.strides[0],
            img.shape[0],
            out.ctypes.data_as(ptr),
            out.strides[0],
            rows,
            cols,
            p.simd,
            *(a.ctypes.data_as(ptr) for a in (p.top, p.bottom, p.itb, p.tbf, p.tb, p.left, p.right, p.ilr, p.lr, p.q)),
            int(self.fused),
        )
        return out


def _compiler() -> str | None:
    return shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc") or shutil.which("clang")


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return platform.processor()


def load() -> ctypes.CDLL:
    """The compiled kernel, compiled first if the cache folder has none for this source, compiler and CPU.
    Raises OSError saying why it cannot be had."""
    cc = _compiler()
    if cc is None:
        raise OSError("no C compiler (cc) to build facegrid/resize.c")
    key = hashlib.sha256(SOURCE.read_bytes() + cc.encode() + " ".join(FLAGS).encode() + _cpu().encode())
    path = cache_dir() / f"resize-{key.hexdigest()[:16]}.so"
    if path.exists():
        try:
            return _bind(ctypes.CDLL(str(path)))
        except OSError:  # a damaged copy: made again
            path.unlink(missing_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    try:
        run = subprocess.run([cc, *FLAGS, "-o", str(tmp), str(SOURCE), "-lm"], capture_output=True, text=True)
        if run.returncode != 0:
            first = (run.stderr.strip().splitlines() or ["no message"])[0]
            raise OSError(f"{cc} could not build facegrid/resize.c: {first}")
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    return _bind(ctypes.CDLL(str(path)))


def _bind(lib: ctypes.CDLL) -> ctypes.CDLL:
    lib.fg_resize.restype = None
    args: list = [ctypes.c_void_p, ctypes.c_long, ctypes.c_long, ctypes.c_void_p] + [ctypes.c_long] * 4
    lib.fg_resize.argtypes = args + [ctypes.c_void_p] * 10 + [ctypes.c_int]
    return lib


def resizer_for(dlib) -> tuple[Resizer | None, str]:
    """(the kernel set to this dlib's arithmetic, "") or (None, why not): it is used only if it gives
    dlib.resize_image's every pixel on the check pictures, up and down."""
    try:
        lib = load()
    except (OSError, AttributeError) as exc:  # AttributeError: a library without the kernel's function
        return None, str(exc)
    rng = np.random.default_rng(0)
    pictures = [(rng.integers(0, 256, (r, c, 3), dtype=np.uint8), rows, cols) for r, c, rows, cols in CHECKS]
    for fused in (True, False):
        kernel = Resizer(lib, fused)
        if all(np.array_equal(kernel(img, r, c), dlib.resize_image(img, r, c)) for img, r, c in pictures):
            return kernel, ""
    return None, "facegrid/resize.c does not give this dlib's resize_image pixel for pixel"
