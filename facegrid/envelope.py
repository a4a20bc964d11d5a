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
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np

# The field checks. ENCODING_BYTES, ENCODING_DIM and frame_id are re-exported: imported from here elsewhere.
from .envelope_checks import ENCODING_BYTES as ENCODING_BYTES
from .envelope_checks import ENCODING_DIM as ENCODING_DIM
from .envelope_checks import (
    MAX_SIDE,
    MAX_TEXT,
    _box,
    _check_outcome,
    _common,
    _encodings,
    _field,
    _int,
    _jpeg,
    _provenance,
    _text,
)
from .envelope_checks import frame_id as frame_id
from .errors import BadJob, ConfigError

MAGIC = b"FGRD"
VERSION = 1  # what a photo's body is written as
FRAME_VERSION = 2  # a video frame's: an older receiver would take it for a photo (docs/protocol.md)
VERSIONS = (VERSION, FRAME_VERSION)
PREFIX = struct.Struct(">4sHI")
MAX_HEADER = 1 << 20  # 1 MiB; a real header is a few KB
STATUSES = ("ok", "no_faces", "error")
SIG_BLOB, SIG_BYTES = "hmac", 32  # the signature: the last blob, HMAC-SHA256
MIN_KEY = 16  # characters in one line of the key file


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
    """A body's header, its blobs by name (the signature taken off) and its envelope version."""
    if not isinstance(body, (bytes, bytearray, memoryview)):
        raise BadJob("body is not bytes (the client must use encoding=None)")
    body = bytes(body)
    _check_signature(body, keys)
    version, end = _read_prefix(body)
    header = _read_header(body, end)
    specs, blobs = _split_blobs(header, body, end)
    _strip_signature(specs, blobs, keys)
    return header, blobs, version


def _check_signature(body: bytes, keys: Keyring | None) -> None:
    """On a signed grid, before anything else: an unsigned or altered body is not even parsed."""
    if keys is not None and (
        len(body) < PREFIX.size + SIG_BYTES or not keys.verify(body[:-SIG_BYTES], body[-SIG_BYTES:])
    ):
        raise BadJob(
            "missing or wrong signature: not signed with a key of [grid] key_file "
            "(a forged or altered job, or a host with another key file)"
        )


def _read_prefix(body: bytes) -> tuple[int, int]:
    """The fixed prefix: magic, a version this host speaks, and a header length the body holds.
    Returns the version and where the header ends."""
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
    return version, end


def _read_header(body: bytes, end: int) -> dict:
    """The JSON header between the prefix and end: an object, with no NaN or Infinity in it."""
    try:
        header = json.loads(body[PREFIX.size : end].decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BadJob(f"header is not UTF-8 JSON: {str(exc)[:120]}") from None
    if not isinstance(header, dict):
        raise BadJob("header is not a JSON object")
    return header


def _split_blobs(header: dict, body: bytes, end: int) -> tuple[list, dict[str, bytes]]:
    """The blobs the header's "blobs" list names, cut from the body after the header; their
    lengths must cover the rest of it exactly. Returns the list and the blobs by name."""
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
    return specs, blobs


def _strip_signature(specs: list, blobs: dict[str, bytes], keys: Keyring | None) -> None:
    """Take the signature blob off: it must come last and be whole; a host with keys needs one."""
    if SIG_BLOB in blobs:
        if specs[-1]["name"] != SIG_BLOB or len(blobs[SIG_BLOB]) != SIG_BYTES:
            raise BadJob(f"the {SIG_BLOB!r} blob must come last and hold {SIG_BYTES} bytes")
        del blobs[SIG_BLOB]  # checked above when this host has keys; ignored otherwise
    elif keys is not None:
        raise BadJob("missing or wrong signature: the body has no 'hmac' blob")


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
    """A result's header and blobs, checked field by field, as a Result."""
    status = _field(header, "status", (str,))
    if status not in STATUSES:
        raise BadJob(f"status {status[:40]!r} is not one of {', '.join(STATUSES)}")
    common = _common(header)
    error = _text(header, "error", MAX_TEXT, optional=True)
    width = _int(header, "width", 1, MAX_SIDE, optional=True)
    height = _int(header, "height", 1, MAX_SIDE, optional=True)
    faces_in = _field(header, "faces", (list,))
    _check_outcome(status, error, width, height, faces_in)
    encodings = _encodings(blobs.pop("encodings", b""), len(faces_in))
    faces = _faces(faces_in, encodings, blobs, width, height)
    annotated = blobs.pop("annotated", b"")
    if annotated:
        _jpeg(annotated, "annotated blob")
    if blobs:
        raise BadJob(f"a result holds unknown blobs: {', '.join(sorted(blobs))[:80]}")
    return Result(
        **common,
        status=status,
        error=error,
        width=width,
        height=height,
        faces=faces,
        annotated=annotated,
        **_provenance(header),
    )


def _faces(
    faces_in: list, encodings: np.ndarray, blobs: dict[str, bytes], width: int | None, height: int | None
) -> list[Face]:
    """The header's faces, each with its encoding and its crop; crops are taken out of blobs,
    so that whatever is left over is a blob a result does not have."""
    faces = []
    for i, item in enumerate(faces_in):
        box = _box(item, i, width, height)
        crop = blobs.pop(f"crop:{i}", b"")
        faces.append(
            Face(box=box, encoding=encodings[i].astype(np.float32), crop=_jpeg(crop, f"crop {i}") if crop else b"")
        )
    return faces


def error_result(job: ImageJob, reason: str, **extra: Any) -> Result:
    """A result that records why a photo yielded nothing."""
    return Result(**{k: v for k, v in job.meta().items()}, status="error", error=reason, **extra)
