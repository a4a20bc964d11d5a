"""Pixels in and out: safe decoding, orientation, modes, CLAHE, annotation, crops.

Everything runs in-process with Pillow, NumPy and OpenCV; no shell commands.
"""

from __future__ import annotations

import dataclasses
import io
import math
import re
import warnings

import cv2
import numpy as np
import pillow_heif
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from .errors import ImageUnreadable

pillow_heif.register_heif_opener()  # HEIC/HEIF photos (an iPhone's default) open through Pillow

ORIENTATION_TAG = 0x0112
SWAPS_SIDES = (5, 6, 7, 8)  # orientations that turn the picture by 90 degrees
BOX_COLOR = (40, 220, 60)  # RGB
MATCH_COLOR = (255, 40, 200)  # RGB: the face a search matched, in a group photo whose other faces are green


@dataclasses.dataclass
class Decoded:
    rgb: np.ndarray  # uint8 HxWx3 at working size, upright
    width: int  # upright size of the original photo
    height: int
    scale: float  # working pixels per original pixel (<= 1)
    orientation: int


SIGNATURES = (  # the first bytes of every format the queuer sends
    (b"\xff\xd8\xff", "jpeg"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"BM", "bmp"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
)
HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1", b"heif"}  # ISO BMFF ftyp


def sniff(data: bytes) -> str | None:
    """The image format these bytes start with, or None: they are not a photo."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[4:8] == b"ftyp" and data[8:12] in HEIF_BRANDS:
        return "heif"
    for magic, kind in SIGNATURES:
        if data.startswith(magic):
            return kind
    return None


def open_safely(data: bytes, max_pixels: int) -> Image.Image:
    """Image.open with the size checked before any pixel is decoded."""
    if not data:
        raise ImageUnreadable("file is empty (0 bytes)")
    Image.MAX_IMAGE_PIXELS = max_pixels  # Pillow refuses over twice this by itself
    ImageFile.LOAD_TRUNCATED_IMAGES = False  # face_recognition turns it on at import: truncated files must fail
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except (
        UnidentifiedImageError,
        Image.DecompressionBombWarning,
        Image.DecompressionBombError,
        OSError,
        ValueError,
        SyntaxError,
    ) as exc:
        raise ImageUnreadable(f"not a readable image ({_short(exc)})") from None
    w, h = img.size
    if w * h > max_pixels or w <= 0 or h <= 0:
        raise ImageUnreadable(
            f"declares {w}x{h} pixels, over filter.max_pixels={max_pixels} "
            "(a decompression bomb?); raise max_pixels in settings.ini if the photo is real"
        )
    return img


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return re.sub(r"<_io\.BytesIO object at 0x[0-9a-f]+>", "the file", text)[:160]


def orientation_of(img: Image.Image) -> int:
    try:
        value = int(img.getexif().get(ORIENTATION_TAG, 1))
    except Exception:  # broken EXIF blocks are common; treat them as upright
        return 1
    return value if 1 <= value <= 8 else 1


def to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode -> 8-bit RGB; transparency is laid on white."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I") and arr.max() > 255 else max(arr.max(), 1.0)
        arr = np.clip(arr * (255.0 / top), 0, 255).astype(np.uint8)
        return Image.fromarray(arr, "L").convert("RGB")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, img).convert("RGB")
    return img if img.mode == "RGB" else img.convert("RGB")


SHRINK_FIRST = ("RGB", "RGBA", "RGBX", "L", "LA", "I", "F", "I;16")


def decode(data: bytes, max_side: int, max_pixels: int) -> Decoded:
    """Bytes -> upright RGB no larger than max_side (0: full size).

    JPEGs are decoded by libjpeg at a reduced scale (draft) when that still
    leaves at least max_side pixels, which saves most of the decoding time.
    """
    img = open_safely(data, max_pixels)
    orientation = orientation_of(img)
    w, h = img.size
    width, height = (h, w) if orientation in SWAPS_SIDES else (w, h)
    try:
        img.seek(0)  # animated GIF / multi-page TIFF: the first frame
        if max_side and max(w, h) > max_side and img.format == "JPEG":
            f = max_side / max(w, h)
            img.draft(None, (math.ceil(w * f), math.ceil(h * f)))
        img.load()
        if max_side and max(img.size) > max_side and img.mode in SHRINK_FIRST and img.format != "JPEG":
            # a large PNG, WebP or TIFF: shrink in its own mode before any full-size copy is made
            # (turning, or laying alpha on white, at full size took several times the pixels' memory).
            # Not a JPEG: draft did its shrinking, and thumbnail() on it would decode it a second time.
            img.thumbnail((max_side, max_side), Image.Resampling.BILINEAR, reducing_gap=2.0)
        img = ImageOps.exif_transpose(img) if orientation != 1 else img
        img = to_rgb(img)
        if max_side and max(img.size) > max_side:
            img.thumbnail((max_side, max_side), Image.Resampling.BILINEAR, reducing_gap=2.0)
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:
        raise ImageUnreadable(f"cannot decode the pixels ({_short(exc)}); the file is damaged or truncated") from None
    rgb = np.asarray(img, dtype=np.uint8)
    return Decoded(rgb=rgb, width=width, height=height, scale=rgb.shape[1] / width, orientation=orientation)


def shrink(rgb: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """A copy no larger than max_side, and the factor applied."""
    h, w = rgb.shape[:2]
    if not max_side or max(h, w) <= max_side:
        return rgb, 1.0
    f = max_side / max(h, w)
    return cv2.resize(rgb, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA), f


def needs_clahe(rgb: np.ndarray) -> bool:
    """Dark or flat photos, where HOG misses faces most often."""
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    return float(gray.mean()) < 70.0 or float(gray.std()) < 30.0


def apply_clahe(rgb: np.ndarray) -> np.ndarray:
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB)
    lab[:, :, 0] = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8)).apply(lab[:, :, 0])
    return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)


def jpeg(rgb: np.ndarray, quality: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ImageUnreadable("OpenCV could not encode a JPEG")
    return buf.tobytes()


def annotate(rgb: np.ndarray, boxes: list[tuple[int, int, int, int]], max_side: int) -> np.ndarray:
    """A copy with each box and its index drawn; boxes are in rgb's pixels."""
    out, f = shrink(rgb, max_side)
    out = out.copy()
    thick = max(2, round(max(out.shape[:2]) / 400))
    for i, (top, right, bottom, left) in enumerate(boxes):
        p1, p2 = (round(left * f), round(top * f)), (round(right * f), round(bottom * f))
        cv2.rectangle(out, p1, p2, BOX_COLOR, thick)
        scale = max(0.5, (p2[0] - p1[0]) / 120)
        label = str(i)
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
        y = max(th + 4, p1[1])
        cv2.rectangle(out, (p1[0], y - th - 4), (p1[0] + tw + 6, y), BOX_COLOR, -1)
        cv2.putText(out, label, (p1[0] + 3, y - 3), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick)
    return out


def mark_face(annotated: bytes, box: tuple[int, int, int, int], width: int, quality: int = 90) -> bytes:
    """The stored annotated copy with one face (box in the original photo's pixels, `width` its
    width) boxed again in MATCH_COLOR, just outside its green box. Unreadable bytes come back as they are."""
    bgr = cv2.imdecode(np.frombuffer(annotated, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None or width <= 0:
        return annotated
    f = bgr.shape[1] / width
    thick = max(3, round(max(bgr.shape[:2]) / 250))
    top, right, bottom, left = (round(v * f) for v in box)
    pad = thick
    color = MATCH_COLOR[::-1]  # OpenCV draws in BGR
    cv2.rectangle(bgr, (left - pad, top - pad), (right + pad, bottom + pad), color, thick)
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    return buf.tobytes() if ok else annotated


def crop(rgb: np.ndarray, box: tuple[int, int, int, int], size: int, margin: float = 0.25) -> np.ndarray:
    """The face with a margin, no larger than size x size."""
    top, right, bottom, left = box
    h, w = rgb.shape[:2]
    m = round(max(bottom - top, right - left) * margin)
    piece = rgb[max(0, top - m) : min(h, bottom + m), max(0, left - m) : min(w, right + m)]
    if piece.size == 0:
        piece = rgb
    return shrink(piece, size)[0]


def reencode_to_fit(data: bytes, limit: int, quality: int, max_pixels: int) -> tuple[bytes, dict]:
    """Shrink a photo until its JPEG is at most limit bytes (for max-job-size)."""
    img = to_rgb(ImageOps.exif_transpose(_loaded(data, max_pixels)))
    side = max(img.size)
    while side >= 64:
        copy = img.copy()
        copy.thumbnail((side, side), Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        copy.save(buf, "JPEG", quality=quality)
        if buf.tell() <= limit:
            return buf.getvalue(), {
                "original_bytes": len(data),
                "width": copy.width,
                "height": copy.height,
                "quality": quality,
                "original_width": img.width,
                "original_height": img.height,
            }
        side = int(side * 0.8)
    raise ImageUnreadable(f"cannot shrink the photo under {limit} bytes")


def _loaded(data: bytes, max_pixels: int) -> Image.Image:
    img = open_safely(data, max_pixels)
    try:
        img.load()
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ImageUnreadable(f"cannot decode the pixels ({_short(exc)})") from None
    return img


def sharpness(jpeg_bytes: bytes) -> float | None:
    """Variance of the Laplacian of a stored face crop (higher: sharper); None if it does not decode.

    Crops are stored at one size, so a small face blown up to it scores low too.
    """
    if not jpeg_bytes:
        return None
    gray = cv2.imdecode(np.frombuffer(jpeg_bytes, dtype=np.uint8), cv2.IMREAD_GRAYSCALE)
    if gray is None:
        return None
    return float(cv2.Laplacian(gray, cv2.CV_64F).var())
