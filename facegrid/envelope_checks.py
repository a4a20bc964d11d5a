"""The field checks of the job envelope: one header field, or one blob, at a time.

envelope.decode() takes a body apart and builds an ImageJob or a Result; the
helpers here say whether one value in it is what it claims to be (its type, its
range, its characters; a JPEG's markers) and raise BadJob naming the field when
it is not. The bounds of docs/protocol.md, "Checked at the door", live here with
the checks that apply them, and so do the size of a face encoding and frame_id,
the rule a video frame's job id is held to; envelope.py re-exports those three.
"""

from __future__ import annotations

import hashlib
import math
import re
from typing import Any

import numpy as np

from .errors import BadJob

ENCODING_DIM = 128  # values in one face encoding
ENCODING_BYTES = ENCODING_DIM * 4  # float32, little-endian
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
# Bounds of the header fields (docs/protocol.md, "Checked at the door").
MAX_PATH = 4096  # characters
MAX_HOST = 255
MAX_TEXT = 2000  # an error message, a version string
MAX_SIZE = 1 << 42  # bytes of one photo: 4 TiB
MAX_SIDE = 1 << 20  # pixels on one side of a photo
MAX_TIME = 1e11  # seconds from the epoch, either way
MAX_FACES = 1000  # faces in one photo
MAX_ATTEMPTS = 1_000_000
MAX_DICT = 64  # entries in filter / settings / timings
MAX_ENCODING_VALUE = 10.0  # real encodings stay well inside [-1, 1]
MAX_THUMB_SIDE = 1 << 14  # pixels on a side of an annotated copy or crop
MAX_VIDEO_S = 1e7  # seconds into a video: 115 days
MAX_FRAME_INDEX = 1 << 40
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")
JPEG_SOI, JPEG_EOI = b"\xff\xd8\xff", b"\xff\xd9"


def frame_id(video_id: str, t: float) -> str:
    """A frame job's id: the sha256 of the video's sha256 and the frame's time in milliseconds."""
    return hashlib.sha256(f"{video_id}:{round(t * 1000)}".encode("ascii")).hexdigest()


def _field(header: dict, name: str, kinds: tuple, optional: bool = False) -> Any:
    value = header.get(name)
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise BadJob(f"field {name!r} is {str(value)[:60]!r}, expected {' or '.join(k.__name__ for k in kinds)}")
    return value


def _int(where: dict, name: str, lo: int, hi: int, optional: bool = False) -> int | None:
    value = _field(where, name, (int,), optional)
    if value is not None and not lo <= value <= hi:
        raise BadJob(f"field {name!r} is {str(value)[:40]}, outside {lo}..{hi}")
    return value


def _number(
    where: dict, name: str, optional: bool = False, lo: float = -MAX_TIME, hi: float = MAX_TIME
) -> float | None:
    value = _field(where, name, (int, float), optional)
    if value is None:
        return None
    if isinstance(value, float) and not math.isfinite(value):
        raise BadJob(f"field {name!r} is {value}, not a finite number")
    if not lo <= value <= hi:
        raise BadJob(f"field {name!r} is {str(value)[:40]}, outside {lo:g}..{hi:g}")
    return float(value)


def _text(where: dict, name: str, limit: int, optional: bool = False, control: bool = True) -> str | None:
    value = _field(where, name, (str,), optional)
    if value is None:
        return None
    if len(value) > limit:
        raise BadJob(f"field {name!r} has {len(value)} characters, over the {limit} allowed")
    if not control and CONTROL_RE.search(value):
        raise BadJob(f"field {name!r} holds control characters: {value[:60].encode('unicode_escape')[:80]!r}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadJob(f"field {name!r} holds a lone surrogate (\\ud800-\\udfff)") from None
    return value


def _flat_dict(header: dict, name: str) -> dict:
    """filter / settings / timings: a small object of short scalar values."""
    value = _field(header, name, (dict,), optional=True) or {}
    if len(value) > MAX_DICT:
        raise BadJob(f"field {name!r} has {len(value)} entries, over the {MAX_DICT} allowed")
    for key, item in value.items():
        _text({"key": key}, "key", 64, control=False)
        if isinstance(item, str):
            _text({f"{name}.{key}": item}, f"{name}.{key}", 200, control=False)
        elif isinstance(item, (int, float)) and not isinstance(item, bool):
            _number({f"{name}.{key}": item}, f"{name}.{key}", lo=-MAX_SIZE, hi=MAX_SIZE)
        elif item is not None and not isinstance(item, bool):
            raise BadJob(f"field {name}.{key[:40]} is a {type(item).__name__}, expected text, a number or null")
    return value


def _common(header: dict) -> dict:
    image_id = _field(header, "id", (str,))
    if not SHA256_RE.match(image_id):
        raise BadJob(f"id {image_id[:80]!r} is not a lowercase hex sha256")
    return {
        "id": image_id,
        "path": _text(header, "path", MAX_PATH),
        "host": _text(header, "host", MAX_HOST, control=False),
        "size": _int(header, "size", 0, MAX_SIZE),
        "mtime": _number(header, "mtime"),
        "queued_at": _number(header, "queued_at"),
        "reencoded": _reencoded(header),
        "frame": _frame(header, image_id),
    }


def _frame(header: dict, job_id: str) -> dict | None:
    """A video frame's origin; its job id must be frame_id(video_id, t)."""
    value = _field(header, "frame", (dict,), optional=True)
    if value is None:
        return None
    video_id = _field(value, "video_id", (str,))
    if not SHA256_RE.match(video_id):
        raise BadJob(f"frame.video_id {video_id[:80]!r} is not a lowercase hex sha256")
    out = {
        "video_id": video_id,
        "t": _number(value, "t", lo=0, hi=MAX_VIDEO_S),
        "t_end": _number(value, "t_end", lo=0, hi=MAX_VIDEO_S),
        "index": _int(value, "index", 0, MAX_FRAME_INDEX),
        "fps": _number(value, "fps", lo=0.001, hi=1000),
        "duration": _number(value, "duration", optional=True, lo=0, hi=MAX_VIDEO_S),
    }
    if out["t_end"] < out["t"]:
        raise BadJob(f"frame.t_end {out['t_end']} is before frame.t {out['t']}")
    if frame_id(video_id, out["t"]) != job_id:
        raise BadJob("id is not the sha256 of the frame's video id and time: not the frame the job names")
    return out


def _reencoded(header: dict) -> dict | None:
    value = _field(header, "reencoded", (dict,), optional=True)
    if value is None:
        return None
    out = {
        "original_bytes": _int(value, "original_bytes", 1, MAX_SIZE),
        "width": _int(value, "width", 1, MAX_SIDE),
        "height": _int(value, "height", 1, MAX_SIDE),
        "quality": _int(value, "quality", 1, 100),
    }
    for side in ("original_width", "original_height"):  # absent from bodies of facegrid 0.x
        if value.get(side) is not None:
            out[side] = _int(value, side, 1, MAX_SIDE)
    return out


def _check_outcome(status: str, error: str | None, width: int | None, height: int | None, faces_in: list) -> None:
    """The status agrees with the rest: an error has a message and no faces; a photo that was
    read has its sides, and faces exactly when it is "ok"."""
    if len(faces_in) > MAX_FACES:
        raise BadJob(f"{len(faces_in)} faces, over the {MAX_FACES} one photo may hold")
    if status == "error":
        if error is None or faces_in:
            raise BadJob("an error result needs an error message and no faces")
    else:
        if width is None or height is None:
            raise BadJob(f"a {status!r} result needs its width and height")
        if (status == "ok") != bool(faces_in):
            raise BadJob(f"status {status!r} does not agree with {len(faces_in)} face(s)")


def _encodings(raw: bytes, count: int) -> np.ndarray:
    """The "encodings" blob as one row per face, each finite and of the size a face encoding has."""
    if len(raw) != count * ENCODING_BYTES:
        raise BadJob(f"{count} faces need {count * ENCODING_BYTES} encoding bytes, got {len(raw)}")
    encodings = np.frombuffer(raw, dtype="<f4").reshape(-1, ENCODING_DIM)
    if not np.all(np.isfinite(encodings)):
        raise BadJob("encodings hold NaN or infinity")
    if encodings.size and float(np.abs(encodings).max()) > MAX_ENCODING_VALUE:
        raise BadJob(f"encodings hold values beyond +-{MAX_ENCODING_VALUE:g}: not face encodings")
    return encodings


def _box(item: Any, i: int, width: int | None, height: int | None) -> tuple[int, int, int, int]:
    """Face i's box: four integers, top, right, bottom, left, inside the photo."""
    box = item.get("box") if isinstance(item, dict) else None
    if not (isinstance(box, list) and len(box) == 4 and all(type(v) is int for v in box)):
        raise BadJob(f"face {i} has no box of 4 integers (top, right, bottom, left)")
    top, right, bottom, left = box
    if not (0 <= left <= right <= width and 0 <= top <= bottom <= height):
        raise BadJob(f"face {i} box {box} is not inside the {width}x{height} photo")
    return top, right, bottom, left


def _provenance(header: dict) -> dict[str, Any]:
    """Who made the result and how: filter, timings, settings, processed_at and attempts."""
    filt = _flat_dict(header, "filter")
    if "host" in filt and not isinstance(filt["host"], str):
        raise BadJob("field filter.host is not text")
    timings = _flat_dict(header, "timings")
    return {
        "filter": filt,
        "settings": _flat_dict(header, "settings"),
        "timings": timings,
        "processed_at": _number(header, "processed_at", optional=True) or 0.0,
        "attempts": _int(header, "attempts", 1, MAX_ATTEMPTS, optional=True) or 1,
    }


SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # start of frame: holds the sides


def _jpeg(data: bytes, what: str) -> bytes:
    """A blob that claims to be a JPEG: start and end markers, and marker segments up to a
    start-of-frame with sane sides. (A walk over the segment headers, far cheaper than Pillow's
    parser, which the collector would pay per crop; search.py still decodes before it uses a blob.)"""
    if not (data.startswith(JPEG_SOI) and data.endswith(JPEG_EOI)):
        raise BadJob(f"{what} is not a JPEG (starts {data[:8]!r}, or has no end marker)")
    pos, end = 2, len(data)
    while pos + 4 <= end:
        if data[pos] != 0xFF:
            raise BadJob(f"{what} is not a readable JPEG (no marker at byte {pos})")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker in SOF_MARKERS and length >= 8 and pos + 9 <= end:
            h, w = int.from_bytes(data[pos + 5 : pos + 7], "big"), int.from_bytes(data[pos + 7 : pos + 9], "big")
            if not (0 < w <= MAX_THUMB_SIDE and 0 < h <= MAX_THUMB_SIDE):
                raise BadJob(f"{what} declares {w}x{h} pixels, over {MAX_THUMB_SIDE} on a side or none")
            return data
        if marker == 0xDA or length < 2:
            break
        pos += 2 + length
    raise BadJob(f"{what} is not a readable JPEG (no frame header)")
