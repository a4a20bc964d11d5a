"""The job envelope without a server: round trips, and every way a body can lie.

Each malformed body is built from a valid one with one fault, so a test fails if
decode() starts accepting that fault (or rejects the valid body it came from).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct

import factories
import numpy as np
import pytest

from facegrid import envelope
from facegrid.envelope import MAGIC, PREFIX, VERSION, Face, ImageJob, Result
from facegrid.errors import BadJob


def tiny_jpeg(shade: int = 0, side: int = 16) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (side, side), (shade, 100, 200)).save(buf, "JPEG")
    return buf.getvalue()


PHOTO = tiny_jpeg(1, 64)
SHA = hashlib.sha256(PHOTO).hexdigest()
CROPS = [tiny_jpeg(10 + i) for i in range(4)]
ANNOTATED = tiny_jpeg(50, 32)


def image_job(**kw) -> ImageJob:
    base = dict(id=SHA, path="/photos/été/a.jpg", host="h1", size=len(PHOTO), mtime=1.5e9, queued_at=1.7e9, image=PHOTO)
    return ImageJob(**{**base, **kw})


def result(n_faces: int = 2, **kw) -> Result:
    rng = np.random.default_rng(7)
    faces = [
        Face(box=(10 + i, 80 + i, 90 + i, 5 + i), encoding=rng.normal(0, 0.1, 128).astype(np.float32), crop=CROPS[i])
        for i in range(n_faces)
    ]
    base: dict = dict(
        id=SHA,
        path="/photos/b.png",
        host="h1",
        size=9,
        mtime=1.0,
        queued_at=2.0,
        status="ok" if n_faces else "no_faces",
        width=640,
        height=480,
        faces=faces,
        annotated=ANNOTATED,
        filter={"pid": 3},
        settings={"model": "hog"},
        timings={"decode_ms": 1.0},
        processed_at=3.0,
        attempts=2,
    )
    return factories.result(**{**base, **kw})


def split(body: bytes) -> tuple[dict, bytes]:
    _, _, hlen = PREFIX.unpack_from(body)
    return json.loads(body[PREFIX.size : PREFIX.size + hlen]), body[PREFIX.size + hlen :]


def join(header: dict, rest: bytes, version: int = VERSION, magic: bytes = MAGIC) -> bytes:
    raw = json.dumps(header).encode()
    return PREFIX.pack(magic, version, len(raw)) + raw + rest


# round trips -------------------------------------------------------------------
def test_image_job_round_trip():
    job = image_job()
    back = envelope.decode(envelope.encode_image_job(job))
    assert isinstance(back, ImageJob)
    assert back == job


def test_image_job_with_error_and_no_image_round_trip():
    shrunk = {"original_bytes": len(PHOTO), "width": 32, "height": 32, "quality": 90}
    job = image_job(image=b"", error="file is too large", reencoded=shrunk)
    back = envelope.decode(envelope.encode_image_job(job))
    assert back.image == b"" and back.error == "file is too large" and back.reencoded == shrunk


def test_result_round_trip_keeps_faces_bit_exact():
    res = result()
    back = envelope.decode(envelope.encode_result(res))
    assert isinstance(back, Result)
    assert (back.id, back.path, back.status, back.width, back.height, back.attempts) == (
        res.id,
        res.path,
        "ok",
        640,
        480,
        2,
    )
    assert back.annotated == ANNOTATED
    assert [f.box for f in back.faces] == [f.box for f in res.faces]
    assert [f.crop for f in back.faces] == CROPS[:2]
    for a, b in zip(back.faces, res.faces, strict=False):
        assert a.encoding.dtype == np.float32
        assert np.array_equal(a.encoding, b.encoding)


def test_error_result_round_trip():
    res = envelope.error_result(image_job(), "not a readable image")
    back = envelope.decode(envelope.encode_result(res))
    assert back.status == "error" and back.error == "not a readable image" and back.faces == []


# bodies that are not envelopes ----------------------------------------------------
@pytest.mark.parametrize(
    "body",
    [b"", b"FG", os.urandom(3), os.urandom(64), os.urandom(4096)],
    ids=["empty", "short", "3-random", "64-random", "4k-random"],
)
def test_random_bytes(body):
    with pytest.raises(BadJob):
        envelope.decode(body)


def test_not_bytes():
    with pytest.raises(BadJob, match="encoding=None"):
        envelope.decode("FGRD a str body")


def test_wrong_magic():
    header, rest = split(envelope.encode_image_job(image_job()))
    with pytest.raises(BadJob, match="wrong magic"):
        envelope.decode(join(header, rest, magic=b"PK\x03\x04"))


@pytest.mark.parametrize("version", [0, max(envelope.VERSIONS) + 1, 65535])
def test_unknown_version(version):
    header, rest = split(envelope.encode_image_job(image_job()))
    with pytest.raises(BadJob, match=f"version {version} is not supported"):
        envelope.decode(join(header, rest, version=version))


# lengths that lie --------------------------------------------------------------
def test_header_length_longer_than_body():
    body = envelope.encode_image_job(image_job())
    _, _, hlen = PREFIX.unpack_from(body)
    lie = PREFIX.pack(MAGIC, VERSION, len(body)) + body[PREFIX.size :]
    with pytest.raises(BadJob, match="header declares"):
        envelope.decode(lie)


def test_header_length_shorter_than_header():
    body = envelope.encode_image_job(image_job())
    _, _, hlen = PREFIX.unpack_from(body)
    lie = PREFIX.pack(MAGIC, VERSION, hlen - 10) + body[PREFIX.size :]
    with pytest.raises(BadJob, match="not UTF-8 JSON"):
        envelope.decode(lie)


def test_header_of_many_megabytes_is_refused_before_parsing():
    big = {"kind": "image", "pad": "x" * (5 << 20), "blobs": []}
    with pytest.raises(BadJob, match="over the 1048576-byte limit"):
        envelope.decode(join(big, b""))


def test_header_declaring_4_gib_on_a_short_body():
    with pytest.raises(BadJob, match="over the"):
        envelope.decode(PREFIX.pack(MAGIC, VERSION, 0xFFFFFFFF) + b"{}")


@pytest.mark.parametrize("delta", [1, -1, 1000])
def test_blob_lengths_that_lie(delta):
    header, rest = split(envelope.encode_image_job(image_job()))
    header["blobs"][0]["length"] += delta
    with pytest.raises(BadJob, match="blob lengths add up"):
        envelope.decode(join(header, rest))


def test_trailing_bytes_after_blobs():
    header, rest = split(envelope.encode_image_job(image_job()))
    with pytest.raises(BadJob, match="blob lengths add up"):
        envelope.decode(join(header, rest + b"extra"))


@pytest.mark.parametrize(
    "spec",
    [
        {"name": "image", "length": -1},
        {"name": "image", "length": "5"},
        {"name": 3, "length": 1},
        "image",
        {"name": "image", "length": True},
    ],
)
def test_bad_blob_entries(spec):
    header, rest = split(envelope.encode_image_job(image_job()))
    header["blobs"] = [spec]
    with pytest.raises(BadJob, match="bad blob entry"):
        envelope.decode(join(header, rest))


@pytest.mark.parametrize("header", [[1, 2], "text", None, 7], ids=["list", "str", "null", "int"])
def test_header_not_an_object(header):
    with pytest.raises(BadJob, match="not a JSON object"):
        envelope.decode(join(header, b""))


def test_header_not_utf8():
    raw = b'{"kind": "\xff\xfe"}'
    with pytest.raises(BadJob, match="not UTF-8 JSON"):
        envelope.decode(PREFIX.pack(MAGIC, VERSION, len(raw)) + raw)


def test_missing_blobs_list():
    header, _ = split(envelope.encode_image_job(image_job(image=b"")))
    del header["blobs"]
    with pytest.raises(BadJob, match="no 'blobs' list"):
        envelope.decode(join(header, b""))


def test_unknown_kind():
    header, rest = split(envelope.encode_image_job(image_job()))
    header["kind"] = "shell"
    with pytest.raises(BadJob, match="unknown kind"):
        envelope.decode(join(header, rest))


# fields ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "bad_id",
    ["", "../../etc/x", SHA.upper(), SHA[:-1], SHA + "0", "g" * 64, 42, None],
    ids=["empty", "path", "upper", "short", "long", "not-hex", "int", "null"],
)
def test_result_id_not_sha256(bad_id):
    header, rest = split(envelope.encode_result(result()))
    header["id"] = bad_id
    with pytest.raises(BadJob, match="id|field"):
        envelope.decode(join(header, rest))


def test_image_id_not_sha256():
    header, rest = split(envelope.encode_image_job(image_job()))
    header["id"] = "../../etc/passwd"
    with pytest.raises(BadJob, match="not a lowercase hex sha256"):
        envelope.decode(join(header, rest))


@pytest.mark.parametrize("status", ["OK", "done", "", 1, None])
def test_bad_status(status):
    header, rest = split(envelope.encode_result(result()))
    header["status"] = status
    with pytest.raises(BadJob, match="status"):
        envelope.decode(join(header, rest))


@pytest.mark.parametrize(
    "field,value",
    [
        ("size", "12"),
        ("size", True),
        ("mtime", "now"),
        ("path", None),
        ("host", 5),
        ("faces", {}),
        ("width", 1.5),
        ("attempts", "2"),
    ],
)
def test_fields_of_the_wrong_type(field, value):
    header, rest = split(envelope.encode_result(result()))
    header[field] = value
    with pytest.raises(BadJob, match=field):
        envelope.decode(join(header, rest))


def _encodings_blob(header: dict) -> tuple[int, int]:
    """(offset into the blob section, length) of the encodings blob."""
    pos = 0
    for spec in header["blobs"]:
        if spec["name"] == "encodings":
            return pos, spec["length"]
        pos += spec["length"]
    raise AssertionError("no encodings blob")


def test_encodings_length_mismatch_more_faces_than_encodings():
    header, rest = split(envelope.encode_result(result(n_faces=2)))
    header["faces"].append({"box": [1, 2, 3, 4]})
    with pytest.raises(BadJob, match="3 faces need 1536 encoding bytes, got 1024"):
        envelope.decode(join(header, rest))


def test_encodings_length_mismatch_partial_vector():
    header, rest = split(envelope.encode_result(result(n_faces=1)))
    off, length = _encodings_blob(header)
    for spec in header["blobs"]:
        if spec["name"] == "encodings":
            spec["length"] = length - 4
    rest = rest[: off + length - 4] + rest[off + length :]
    with pytest.raises(BadJob, match="1 faces need 512 encoding bytes, got 508"):
        envelope.decode(join(header, rest))


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_nan_or_infinite_encodings(value):
    header, rest = split(envelope.encode_result(result(n_faces=2)))
    off, _ = _encodings_blob(header)
    poisoned = bytearray(rest)
    poisoned[off + 512 + 40 : off + 512 + 44] = struct.pack("<f", value)  # face 1, element 10
    with pytest.raises(BadJob, match="NaN or infinity"):
        envelope.decode(join(header, bytes(poisoned)))


@pytest.mark.parametrize("box", [[1, 2, 3], [1, 2, 3, "4"], [1.0, 2, 3, 4], None, [1, 2, 3, True]])
def test_bad_boxes(box):
    header, rest = split(envelope.encode_result(result(n_faces=1)))
    header["faces"][0]["box"] = box
    with pytest.raises(BadJob, match="box of 4 integers"):
        envelope.decode(join(header, rest))


def test_every_single_byte_truncation_is_refused():
    """No prefix of a valid body decodes; each raises BadJob, never anything else."""
    body = envelope.encode_result(result(n_faces=1))
    for cut in range(len(body)):
        with pytest.raises(BadJob):
            envelope.decode(body[:cut])


def test_random_bit_flips_raise_badjob_or_decode():
    """A flipped bit anywhere gives BadJob or a valid object, never another exception."""
    body = envelope.encode_result(result(n_faces=1))
    rng = np.random.default_rng(1)
    for pos in rng.integers(0, len(body), 400):
        mutated = bytearray(body)
        mutated[pos] ^= 1 << int(rng.integers(0, 8))
        try:
            out = envelope.decode(bytes(mutated))
        except BadJob:
            continue
        assert isinstance(out, Result)
