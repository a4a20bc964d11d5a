"""The job envelope: the only format that crosses the network (docs/protocol.md).

    magic "FGRD" | version u16 BE | header length u32 BE | JSON header | blobs

The header is a UTF-8 JSON object. Its "blobs" list names the binary parts that
follow it, in order, with their lengths; the lengths must add up to exactly the
rest of the body. Nothing here can run code: no pickle, ever.

``decode()`` returns an ImageJob or a Result, or raises BadJob naming the fault.
"""

from __future__ import annotations

import dataclasses
import json
import re
import struct
from typing import Any

import numpy as np

from .errors import BadJob

MAGIC = b"FGRD"
VERSION = 1
PREFIX = struct.Struct(">4sHI")
MAX_HEADER = 1 << 20  # 1 MiB; a real header is a few KB
ENCODING_DIM = 128
ENCODING_BYTES = ENCODING_DIM * 4  # float32, little-endian
STATUSES = ("ok", "no_faces", "error")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


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

    def meta(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("id", "path", "host", "size", "mtime", "queued_at", "reencoded")}


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


def _pack(header: dict, blobs: list[tuple[str, bytes]]) -> bytes:
    header = dict(header, blobs=[{"name": n, "length": len(b)} for n, b in blobs])
    raw = json.dumps(header, separators=(",", ":"), ensure_ascii=True).encode("ascii")
    return b"".join([PREFIX.pack(MAGIC, VERSION, len(raw)), raw] + [b for _, b in blobs])


def encode_image_job(job: ImageJob) -> bytes:
    header = dict(job.meta(), kind="image", error=job.error)
    return _pack(header, [("image", job.image)] if job.image else [])


def encode_result(res: Result) -> bytes:
    faces = [{"box": list(map(int, f.box))} for f in res.faces]
    header = {
        "kind": "result", "id": res.id, "path": res.path, "host": res.host, "size": res.size,
        "mtime": res.mtime, "queued_at": res.queued_at, "status": res.status, "error": res.error,
        "width": res.width, "height": res.height, "faces": faces, "reencoded": res.reencoded,
        "filter": res.filter, "settings": res.settings, "timings": res.timings,
        "processed_at": res.processed_at, "attempts": res.attempts,
    }
    blobs = []
    if res.annotated:
        blobs.append(("annotated", res.annotated))
    if res.faces:
        enc = np.stack([np.asarray(f.encoding, dtype="<f4") for f in res.faces])
        blobs.append(("encodings", enc.tobytes()))
    blobs += [(f"crop:{i}", f.crop) for i, f in enumerate(res.faces) if f.crop]
    return _pack(header, blobs)


def _unpack(body: bytes) -> tuple[dict, dict[str, bytes]]:
    if not isinstance(body, (bytes, bytearray, memoryview)):
        raise BadJob("body is not bytes (the client must use encoding=None)")
    if len(body) < PREFIX.size:
        raise BadJob(f"body is {len(body)} bytes, shorter than the {PREFIX.size}-byte prefix")
    magic, version, hlen = PREFIX.unpack_from(body)
    if magic != MAGIC:
        raise BadJob(f"wrong magic {bytes(magic)!r}, expected {MAGIC!r}: not a facegrid job")
    if version != VERSION:
        raise BadJob(f"envelope version {version} is not supported (this filter speaks {VERSION}); "
                     "run the same facegrid release on every host")
    if hlen > MAX_HEADER:
        raise BadJob(f"header declares {hlen} bytes, over the {MAX_HEADER}-byte limit")
    end = PREFIX.size + hlen
    if end > len(body):
        raise BadJob(f"header declares {hlen} bytes but the body has only {len(body) - PREFIX.size}")
    try:
        header = json.loads(bytes(body[PREFIX.size:end]).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadJob(f"header is not UTF-8 JSON: {exc}") from None
    if not isinstance(header, dict):
        raise BadJob("header is not a JSON object")
    specs = header.get("blobs")
    if not isinstance(specs, list):
        raise BadJob("header has no 'blobs' list")
    blobs, pos = {}, end
    for spec in specs:
        if not (isinstance(spec, dict) and isinstance(spec.get("name"), str)
                and type(spec.get("length")) is int and spec["length"] >= 0):
            raise BadJob(f"bad blob entry {str(spec)[:80]!r}: needs a name and a length >= 0")
        blobs[spec["name"]] = bytes(body[pos:pos + spec["length"]])
        pos += spec["length"]
    if pos != len(body):
        raise BadJob(f"blob lengths add up to {pos - end} bytes but {len(body) - end} follow the header")
    return header, blobs


def _field(header: dict, name: str, kinds: tuple, optional: bool = False) -> Any:
    value = header.get(name)
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise BadJob(f"field {name!r} is {value!r:.60}, expected {' or '.join(k.__name__ for k in kinds)}")
    return value


def _common(header: dict) -> dict:
    image_id = _field(header, "id", (str,))
    if not SHA256_RE.match(image_id):
        raise BadJob(f"id {image_id[:80]!r} is not a lowercase hex sha256")
    return {
        "id": image_id,
        "path": _field(header, "path", (str,)),
        "host": _field(header, "host", (str,)),
        "size": _field(header, "size", (int,)),
        "mtime": float(_field(header, "mtime", (int, float))),
        "queued_at": float(_field(header, "queued_at", (int, float))),
        "reencoded": _field(header, "reencoded", (dict,), optional=True),
    }


def decode(body: bytes) -> ImageJob | Result:
    """Parse a job body. Raises BadJob with the reason for anything malformed."""
    header, blobs = _unpack(body)
    kind = header.get("kind")
    if kind == "image":
        return ImageJob(**_common(header), image=blobs.get("image", b""),
                        error=_field(header, "error", (str,), optional=True))
    if kind == "result":
        return _decode_result(header, blobs)
    raise BadJob(f"unknown kind {str(kind)[:40]!r}, expected 'image' or 'result'")


def _decode_result(header: dict, blobs: dict[str, bytes]) -> Result:
    status = _field(header, "status", (str,))
    if status not in STATUSES:
        raise BadJob(f"status {status[:40]!r} is not one of {', '.join(STATUSES)}")
    faces_in = _field(header, "faces", (list,))
    raw = blobs.get("encodings", b"")
    if len(raw) != len(faces_in) * ENCODING_BYTES:
        raise BadJob(f"{len(faces_in)} faces need {len(faces_in) * ENCODING_BYTES} encoding bytes, got {len(raw)}")
    encodings = np.frombuffer(raw, dtype="<f4").reshape(-1, ENCODING_DIM)
    if not np.all(np.isfinite(encodings)):
        raise BadJob("encodings hold NaN or infinity")
    faces = []
    for i, item in enumerate(faces_in):
        box = item.get("box") if isinstance(item, dict) else None
        if not (isinstance(box, list) and len(box) == 4 and all(type(v) is int for v in box)):
            raise BadJob(f"face {i} has no box of 4 integers (top, right, bottom, left)")
        faces.append(Face(box=tuple(box), encoding=encodings[i].astype(np.float32), crop=blobs.get(f"crop:{i}", b"")))
    return Result(
        **_common(header), status=status,
        error=_field(header, "error", (str,), optional=True),
        width=_field(header, "width", (int,), optional=True),
        height=_field(header, "height", (int,), optional=True),
        faces=faces, annotated=blobs.get("annotated", b""),
        filter=_field(header, "filter", (dict,), optional=True) or {},
        settings=_field(header, "settings", (dict,), optional=True) or {},
        timings=_field(header, "timings", (dict,), optional=True) or {},
        processed_at=float(_field(header, "processed_at", (int, float), optional=True) or 0.0),
        attempts=_field(header, "attempts", (int,), optional=True) or 1,
    )


def error_result(job: ImageJob, reason: str, **extra: Any) -> Result:
    """A result that records why a photo yielded nothing."""
    return Result(**{k: v for k, v in job.meta().items()}, status="error", error=reason, **extra)
