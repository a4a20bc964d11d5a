"""The job envelope: the only format that crosses the network (docs/protocol.md).

    magic "FGRD" | version u16 BE | header length u32 BE | JSON header | blobs

The header is a UTF-8 JSON object. Its "blobs" list names the binary parts that
follow it, in order, with their lengths; the lengths must add up to exactly the
rest of the body. Nothing here can run code: no pickle, ever.

On a signed grid ([grid] key_file) the last blob is "hmac": HMAC-SHA256, with the
first key of the key file, over every byte of the body before it. ``decode()``
checks it against every key before it parses anything else.

``decode()`` returns an ImageJob or a Result, or raises BadJob naming the fault.
Every header field is checked for type and range, and every blob for being what
it claims to be; nothing but BadJob escapes it, whatever the bytes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import math
import os
import re
import struct
from pathlib import Path
from typing import Any

import numpy as np

from .errors import BadJob, ConfigError

MAGIC = b"FGRD"
VERSION = 1  # what a photo's body is written as
FRAME_VERSION = 2  # a video frame's: an older receiver would take it for a photo (docs/protocol.md)
VERSIONS = (VERSION, FRAME_VERSION)
PREFIX = struct.Struct(">4sHI")
MAX_HEADER = 1 << 20  # 1 MiB; a real header is a few KB
ENCODING_DIM = 128
ENCODING_BYTES = ENCODING_DIM * 4  # float32, little-endian
STATUSES = ("ok", "no_faces", "error")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
SIG_BLOB, SIG_BYTES = "hmac", 32  # the signature: the last blob, HMAC-SHA256
MIN_KEY = 16  # characters in one line of the key file
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


@dataclasses.dataclass
class ImageJob:
    """One photo on the images tube."""

    id: str  # sha256 of the original file's bytes, lowercase hex
    path: str
    host: str
    size: int  # bytes of the original file
    mtime: float  # seconds since the epoch
    queued_at: float
    image: bytes = b""  # the photo, as read or re-encoded (see reencoded)
    reencoded: dict | None = None
    error: str | None = None  # set when the queuer could not make a usable job body
    frame: dict | None = None  # a video frame: {video_id, t, t_end, index, fps, duration} (frame_id)

    def meta(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("id", "path", "host", "size", "mtime", "queued_at", "reencoded", "frame")}


def frame_id(video_id: str, t: float) -> str:
    """A frame job's id: the sha256 of the video's sha256 and the frame's time in milliseconds."""
    return hashlib.sha256(f"{video_id}:{round(t * 1000)}".encode("ascii")).hexdigest()


@dataclasses.dataclass
class Face:
    box: tuple[int, int, int, int]  # top, right, bottom, left in original pixels
    encoding: np.ndarray  # float32[128]
    crop: bytes = b""  # small JPEG of the face


@dataclasses.dataclass
class Result:
    """What a filter made of one ImageJob, on the people tube."""

    id: str
    path: str
    host: str
    size: int
    mtime: float
    queued_at: float
    status: str
    error: str | None = None
    width: int | None = None
    height: int | None = None
    faces: list[Face] = dataclasses.field(default_factory=list)
    annotated: bytes = b""
    reencoded: dict | None = None
    filter: dict = dataclasses.field(default_factory=dict)  # host, pid, version
    settings: dict = dataclasses.field(default_factory=dict)
    timings: dict = dataclasses.field(default_factory=dict)  # milliseconds
    processed_at: float = 0.0
    attempts: int = 1
    frame: dict | None = None  # copied from the image job: where in which video the picture came from


class Keyring:
    """The grid's shared secrets: the first key signs, every key verifies (rotation)."""

    def __init__(self, keys: list[bytes], source: str = ""):
        if not keys:
            raise ValueError("a keyring needs at least one key")
        self.keys, self.source = keys, source

    def sign(self, data: bytes) -> bytes:
        return hmac.new(self.keys[0], data, hashlib.sha256).digest()

    def verify(self, data: bytes, mac: bytes) -> bool:
        ok = False
        for key in self.keys:  # every key, always: the time taken does not tell which one matched
            ok |= hmac.compare_digest(hmac.new(key, data, hashlib.sha256).digest(), mac)
        return ok


def load_keys(path: str | os.PathLike | None) -> Keyring | None:
    """The keyring in a key file (one key a line, # comments), or None: an unsigned grid."""
    if not path:
        return None
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = getattr(exc, "strerror", None) or str(exc)
        raise ConfigError(
            f"grid.key_file {path}: cannot read it ({why}); make one with "
            "'openssl rand -hex 32 > FILE; chmod 600 FILE' and copy it to every host"
        ) from None
    keys = [k for k in (line.strip() for line in text.splitlines()) if k and not k.startswith("#")]
    if not keys:
        raise ConfigError(f"grid.key_file {path}: holds no key; add a line made by 'openssl rand -hex 32'")
    for n, key in enumerate(keys, 1):
        if len(key) < MIN_KEY:
            raise ConfigError(
                f"grid.key_file {path}: key {n} has {len(key)} characters, fewer than {MIN_KEY}; "
                "make keys with 'openssl rand -hex 32'"
            )
    return Keyring([k.encode("utf-8") for k in keys], str(path))


UNSIGNED_WARNING = (
    "jobs are not signed ([grid] key_file is not set): anyone who reaches beanstalkd can forge "
    "them; see docs/protocol.md, 'Signed jobs'"
)


def _pack(header: dict, blobs: list[tuple[str, bytes]], keys: Keyring | None = None) -> bytes:
    specs = [{"name": n, "length": len(b)} for n, b in blobs]
    if keys is not None:
        specs.append({"name": SIG_BLOB, "length": SIG_BYTES})
    raw = json.dumps(dict(header, blobs=specs), separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode(
        "ascii"
    )
    version = FRAME_VERSION if header.get("frame") else VERSION
    body = b"".join([PREFIX.pack(MAGIC, version, len(raw)), raw] + [b for _, b in blobs])
    return body + keys.sign(body) if keys is not None else body


def encode_image_job(job: ImageJob, keys: Keyring | None = None) -> bytes:
    header = dict(job.meta(), kind="image", error=job.error)
    if not job.frame:
        del header["frame"]
    return _pack(header, [("image", job.image)] if job.image else [], keys)


def encode_result(res: Result, keys: Keyring | None = None) -> bytes:
    faces = [{"box": list(map(int, f.box))} for f in res.faces]
    header = {
        "kind": "result",
        "id": res.id,
        "path": res.path,
        "host": res.host,
        "size": res.size,
        "mtime": res.mtime,
        "queued_at": res.queued_at,
        "status": res.status,
        "error": res.error,
        "width": res.width,
        "height": res.height,
        "faces": faces,
        "reencoded": res.reencoded,
        "filter": res.filter,
        "settings": res.settings,
        "timings": res.timings,
        "processed_at": res.processed_at,
        "attempts": res.attempts,
    }
    if res.frame:
        header["frame"] = res.frame
    blobs = []
    if res.annotated:
        blobs.append(("annotated", res.annotated))
    if res.faces:
        enc = np.stack([np.asarray(f.encoding, dtype="<f4") for f in res.faces])
        blobs.append(("encodings", enc.tobytes()))
    blobs += [(f"crop:{i}", f.crop) for i, f in enumerate(res.faces) if f.crop]
    return _pack(header, blobs, keys)


def _no_constant(name: str):
    raise BadJob(f"header holds {name}, which is not a number JSON allows")


def _unpack(body: bytes, keys: Keyring | None) -> tuple[dict, dict[str, bytes], int]:
    if not isinstance(body, (bytes, bytearray, memoryview)):
        raise BadJob("body is not bytes (the client must use encoding=None)")
    body = bytes(body)
    # before anything else: an unsigned or altered body is not even parsed
    if keys is not None and (
        len(body) < PREFIX.size + SIG_BYTES or not keys.verify(body[:-SIG_BYTES], body[-SIG_BYTES:])
    ):
        raise BadJob(
            "missing or wrong signature: not signed with a key of [grid] key_file "
            "(a forged or altered job, or a host with another key file)"
        )
    if len(body) < PREFIX.size:
        raise BadJob(f"body is {len(body)} bytes, shorter than the {PREFIX.size}-byte prefix")
    magic, version, hlen = PREFIX.unpack_from(body)
    if magic != MAGIC:
        raise BadJob(f"wrong magic {bytes(magic)!r}, expected {MAGIC!r}: not a facegrid job")
    if version not in VERSIONS:
        raise BadJob(
            f"envelope version {version} is not supported (this filter speaks {VERSION} and {FRAME_VERSION}); "
            "run the same facegrid release on every host"
        )
    if hlen > MAX_HEADER:
        raise BadJob(f"header declares {hlen} bytes, over the {MAX_HEADER}-byte limit")
    end = PREFIX.size + hlen
    if end > len(body):
        raise BadJob(f"header declares {hlen} bytes but the body has only {len(body) - PREFIX.size}")
    try:
        header = json.loads(body[PREFIX.size : end].decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BadJob(f"header is not UTF-8 JSON: {str(exc)[:120]}") from None
    if not isinstance(header, dict):
        raise BadJob("header is not a JSON object")
    specs = header.get("blobs")
    if not isinstance(specs, list):
        raise BadJob("header has no 'blobs' list")
    blobs, pos = {}, end
    for spec in specs:
        if not (
            isinstance(spec, dict)
            and isinstance(spec.get("name"), str)
            and type(spec.get("length")) is int
            and spec["length"] >= 0
        ):
            raise BadJob(f"bad blob entry {str(spec)[:80]!r}: needs a name and a length >= 0")
        if spec["name"] in blobs:
            raise BadJob(f"blob {spec['name'][:40]!r} is listed twice")
        blobs[spec["name"]] = body[pos : pos + spec["length"]]
        pos += spec["length"]
    if pos != len(body):
        raise BadJob(f"blob lengths add up to {pos - end} bytes but {len(body) - end} follow the header")
    if SIG_BLOB in blobs:
        if specs[-1]["name"] != SIG_BLOB or len(blobs[SIG_BLOB]) != SIG_BYTES:
            raise BadJob(f"the {SIG_BLOB!r} blob must come last and hold {SIG_BYTES} bytes")
        del blobs[SIG_BLOB]  # checked above when this host has keys; ignored otherwise
    elif keys is not None:
        raise BadJob("missing or wrong signature: the body has no 'hmac' blob")
    return header, blobs, version


# field checks ---------------------------------------------------------------------
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


def decode(body: bytes, keys: Keyring | None = None) -> ImageJob | Result:
    """Parse and check a job body. Raises BadJob with the reason for anything else.

    keys: the grid's keyring; when given, a body without a valid signature is refused.
    """
    header, blobs, version = _unpack(body, keys)
    if (version == FRAME_VERSION) != (header.get("frame") is not None):
        raise BadJob(f"envelope version {version} does not agree with the frame field (frames are version 2)")
    kind = header.get("kind")
    if kind == "image":
        return _decode_image(header, blobs)
    if kind == "result":
        return _decode_result(header, blobs)
    raise BadJob(f"unknown kind {str(kind)[:40]!r}, expected 'image' or 'result'")


def _decode_image(header: dict, blobs: dict[str, bytes]) -> ImageJob:
    job = ImageJob(**_common(header), image=blobs.pop("image", b""), error=_text(header, "error", MAX_TEXT, True))
    if blobs:
        raise BadJob(f"an image job holds unknown blobs: {', '.join(sorted(blobs))[:80]}")
    if job.error is not None:
        if job.image:
            raise BadJob("an image job with an error carries no image blob")
        return job
    if not job.image:
        raise BadJob("an image job without an error needs an image blob")
    what = "image" if job.frame is None else "frame"
    if job.reencoded is None:
        if len(job.image) != job.size:
            raise BadJob(f"{what} blob is {len(job.image)} bytes but the job says size {job.size}")
        if job.frame is not None:  # a frame's id is frame_id(video_id, t), checked with the frame
            _jpeg(job.image, "frame image blob")
        elif hashlib.sha256(job.image).hexdigest() != job.id:
            raise BadJob("image blob's sha256 is not the job's id: the bytes are not the photo the job names")
    else:
        if job.reencoded["original_bytes"] != job.size:
            raise BadJob(f"reencoded.original_bytes {job.reencoded['original_bytes']} is not the size {job.size}")
        _jpeg(job.image, "re-encoded image blob")
    return job


def _decode_result(header: dict, blobs: dict[str, bytes]) -> Result:
    status = _field(header, "status", (str,))
    if status not in STATUSES:
        raise BadJob(f"status {status[:40]!r} is not one of {', '.join(STATUSES)}")
    common = _common(header)
    error = _text(header, "error", MAX_TEXT, optional=True)
    width = _int(header, "width", 1, MAX_SIDE, optional=True)
    height = _int(header, "height", 1, MAX_SIDE, optional=True)
    faces_in = _field(header, "faces", (list,))
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
    raw = blobs.pop("encodings", b"")
    if len(raw) != len(faces_in) * ENCODING_BYTES:
        raise BadJob(f"{len(faces_in)} faces need {len(faces_in) * ENCODING_BYTES} encoding bytes, got {len(raw)}")
    encodings = np.frombuffer(raw, dtype="<f4").reshape(-1, ENCODING_DIM)
    if not np.all(np.isfinite(encodings)):
        raise BadJob("encodings hold NaN or infinity")
    if encodings.size and float(np.abs(encodings).max()) > MAX_ENCODING_VALUE:
        raise BadJob(f"encodings hold values beyond +-{MAX_ENCODING_VALUE:g}: not face encodings")
    faces = []
    for i, item in enumerate(faces_in):
        box = item.get("box") if isinstance(item, dict) else None
        if not (isinstance(box, list) and len(box) == 4 and all(type(v) is int for v in box)):
            raise BadJob(f"face {i} has no box of 4 integers (top, right, bottom, left)")
        top, right, bottom, left = box
        if not (0 <= left <= right <= width and 0 <= top <= bottom <= height):
            raise BadJob(f"face {i} box {box} is not inside the {width}x{height} photo")
        crop = blobs.pop(f"crop:{i}", b"")
        faces.append(
            Face(
                box=(top, right, bottom, left),
                encoding=encodings[i].astype(np.float32),
                crop=_jpeg(crop, f"crop {i}") if crop else b"",
            )
        )
    annotated = blobs.pop("annotated", b"")
    if annotated:
        _jpeg(annotated, "annotated blob")
    if blobs:
        raise BadJob(f"a result holds unknown blobs: {', '.join(sorted(blobs))[:80]}")
    filt = _flat_dict(header, "filter")
    if "host" in filt and not isinstance(filt["host"], str):
        raise BadJob("field filter.host is not text")
    timings = _flat_dict(header, "timings")
    return Result(
        **common,
        status=status,
        error=error,
        width=width,
        height=height,
        faces=faces,
        annotated=annotated,
        filter=filt,
        settings=_flat_dict(header, "settings"),
        timings=timings,
        processed_at=_number(header, "processed_at", optional=True) or 0.0,
        attempts=_int(header, "attempts", 1, MAX_ATTEMPTS, optional=True) or 1,
    )


def error_result(job: ImageJob, reason: str, **extra: Any) -> Result:
    """A result that records why a photo yielded nothing."""
    return Result(**{k: v for k, v in job.meta().items()}, status="error", error=reason, **extra)
