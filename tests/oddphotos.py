"""Odd and hostile image files, made on the fly from one real one-face photo.

Every function writes into a folder the caller owns (a pytest tmp folder) and
returns the path it wrote. Nothing here touches the shared photos: they are only
read. Used by tests/test_hostile.py and tests/test_faults.py.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

ORIENTATION_TAG = 0x0112
# The transpose that, applied to the upright picture, gives the stored pixels of a
# photo tagged with each EXIF orientation (the inverse of what a viewer applies).
STORED_FROM_UPRIGHT = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def upright(source: Path, max_side: int = 800) -> Image.Image:
    """The source photo as RGB, no larger than max_side (keeps the tests quick)."""
    img = Image.open(source).convert("RGB")
    img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return img


def unique_copy(source: Path, dest: Path, n: int) -> Path:
    """A copy of a photo with one pixel changed, so its sha256 differs for each n."""
    img = Image.open(source).convert("RGB")
    img.putpixel((n % img.width, (n // img.width) % img.height), (n % 256, (n * 7) % 256, (n * 13) % 256))
    img.save(dest, "JPEG", quality=92)
    return dest


# files that must end as error rows ------------------------------------------------
def empty(folder: Path) -> Path:
    path = folder / "empty.jpg"
    path.write_bytes(b"")
    return path


def truncated_jpeg(folder: Path, source: Path) -> Path:
    """The first third of a real JPEG: a valid header, then nothing."""
    data = source.read_bytes()
    path = folder / "truncated.jpg"
    path.write_bytes(data[: len(data) // 3])
    return path


def text_as_jpeg(folder: Path) -> Path:
    path = folder / "notes.jpg"
    path.write_text("This is a shopping list, not a photo.\nmilk\neggs\n")
    return path


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png(folder: Path, side: int = 50_000, name: str = "bomb.png") -> Path:
    """A PNG of a few hundred bytes that declares side x side RGB pixels.

    The IDAT holds only the first rows, enough for a decoder to start: a decoder
    that trusted the header would try to allocate side*side*3 bytes (7.5 GB).
    """
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    rows = zlib.compress(b"\x00" * (1 + side * 3) * 4, 9)
    data = b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", rows) + _png_chunk(b"IEND", b"")
    path = folder / name
    path.write_bytes(data)
    return path


# valid photos in unusual forms: the face must be found -----------------------------
def cmyk_jpeg(folder: Path, source: Path) -> Path:
    path = folder / "cmyk.jpg"
    upright(source).convert("CMYK").save(path, "JPEG", quality=92)
    return path


def png16(folder: Path, source: Path) -> Path:
    """16 bits per channel RGB (PNG colour type 2, bit depth 16)."""
    import cv2

    rgb = np.asarray(upright(source), dtype=np.uint16) * 257
    path = folder / "deep16.png"
    cv2.imwrite(str(path), np.ascontiguousarray(rgb[:, :, ::-1]))
    return path


def gray16(folder: Path, source: Path) -> Path:
    """16-bit grayscale PNG (Pillow mode I;16)."""
    gray = np.asarray(upright(source).convert("L"), dtype=np.uint16) * 257
    path = folder / "gray16.png"
    Image.fromarray(gray).save(path, "PNG")
    return path


def grayscale(folder: Path, source: Path) -> Path:
    path = folder / "gray.jpg"
    upright(source).convert("L").save(path, "JPEG", quality=92)
    return path


def palette_transparent(folder: Path, source: Path) -> Path:
    """A 256-colour palette PNG whose colour 0 is transparent (a tRNS chunk)."""
    img = upright(source).quantize(colors=255)
    pal = img.getpalette()
    assert pal is not None  # a quantized picture has its palette
    img.putpalette(pal[: 3 * 255] + [0, 0, 0])  # make index 255 unused by the picture
    arr = np.asarray(img).copy()
    arr[:8, :] = 255  # a transparent strip along the top
    out = Image.fromarray(arr, "P")
    out.putpalette(pal)
    path = folder / "palette.png"
    out.save(path, "PNG", transparency=255)
    return path


def animated_gif(folder: Path, source: Path) -> Path:
    """Three frames: the face first, then two empty frames."""
    first = upright(source)
    blank = Image.new("RGB", first.size, (30, 30, 30))
    path = folder / "animated.gif"
    first.save(path, "GIF", save_all=True, append_images=[blank, blank.copy()], duration=200, loop=0)
    return path


def oriented(folder: Path, source: Path, orientation: int) -> Path:
    """A JPEG tagged with this EXIF orientation whose upright view is the source."""
    img = upright(source)
    op = STORED_FROM_UPRIGHT[orientation]
    stored = img if op is None else img.transpose(op)
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = orientation
    path = folder / f"orient{orientation}.jpg"
    stored.save(path, "JPEG", quality=95, exif=exif.tobytes())
    return path


def upright_view(path: Path) -> Image.Image:
    """What a viewer shows for a file (to check the generator itself)."""
    from PIL import ImageOps

    with Image.open(path) as img:
        return ImageOps.exif_transpose(img).convert("RGB")


def jpeg_bytes(img: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def heic(folder: Path, source: Path) -> Path:
    """The source as an HEIC file, encoded by pillow-heif itself (an iPhone's default format)."""
    import pillow_heif

    img = upright(source)
    path = folder / "iphone.heic"
    pillow_heif.from_pillow(img).save(path, quality=90)
    return path


def not_photos(folder: Path) -> dict[str, str]:
    """Files the queuer leaves aside by their extension -> the summary key that counts each."""
    made = {"song.mp3": ".mp3", "notes.txt": ".txt", "README": ".none", "odd.a=b c": ".other"}
    for name in made:
        (folder / name).write_bytes(b"not a photo\n")
    return made
