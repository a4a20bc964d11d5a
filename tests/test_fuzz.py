"""Property-based fuzzing (hypothesis) of decode, its checks, and the store.

Whatever the bytes, decode() returns an ImageJob or a Result or raises BadJob;
whatever decode() accepts, the store takes without an error; and a collector fed
a batch of mutated bodies through a real beanstalkd exits 0 with every body
either stored or buried.
"""

from __future__ import annotations

import hashlib
import json
import os
import random

import numpy as np
import pytest
from conftest import db_rows, run_script, tiny_jpeg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from facegrid import envelope, store
from facegrid.envelope import MAGIC, PREFIX, VERSION, Face, ImageJob, Result
from facegrid.errors import BadJob

# FACEGRID_FUZZ_EXAMPLES=5000 scripts/test.sh -k fuzz: a longer hunt than the default run
FUZZ = settings(
    max_examples=int(os.environ.get("FACEGRID_FUZZ_EXAMPLES", 300)),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    database=None,
)
PHOTO = tiny_jpeg(3, 48)
KEYS = envelope.Keyring([b"0123456789abcdef0123456789abcdef"])


def image_job() -> ImageJob:
    return ImageJob(
        id=hashlib.sha256(PHOTO).hexdigest(),
        path="/p/a.jpg",
        host="h",
        size=len(PHOTO),
        mtime=1.7e9,
        queued_at=1.7e9,
        image=PHOTO,
    )


def result(n: int = 2) -> Result:
    rng = np.random.default_rng(n)
    faces = [
        Face(box=(5 + i, 40 + i, 45 + i, 2 + i), encoding=rng.normal(0, 0.1, 128).astype(np.float32), crop=tiny_jpeg(i))
        for i in range(n)
    ]
    return Result(
        id=hashlib.sha256(b"r%d" % n).hexdigest(),
        path="/p/r.jpg",
        host="h",
        size=10,
        mtime=1.0,
        queued_at=2.0,
        status="ok" if n else "no_faces",
        width=64,
        height=64,
        faces=faces,
        annotated=tiny_jpeg(9, 32),
        filter={"host": "f", "pid": 1, "version": "t"},
        settings={"model": "hog"},
        timings={"total_ms": 1.0},
        processed_at=3.0,
    )


BODIES = [
    envelope.encode_image_job(image_job()),
    envelope.encode_result(result(2)),
    envelope.encode_result(result(0)),
    envelope.encode_result(envelope.error_result(image_job(), "not a readable image")),
]


def decode_or_badjob(body: bytes, keys=None):
    try:
        out = envelope.decode(body, keys)
    except BadJob:
        return None
    assert isinstance(out, (ImageJob, Result))
    return out


@FUZZ
@given(st.binary(max_size=2048))
def test_random_bytes_give_badjob(body):
    decode_or_badjob(body)
    decode_or_badjob(PREFIX.pack(MAGIC, VERSION, len(body)) + body)


SIGNED = envelope.encode_result(result(2), KEYS)


@st.composite
def mutated(draw, bodies=tuple(BODIES)):
    body = bytearray(draw(st.sampled_from(bodies)))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        pos = draw(st.integers(0, max(len(body) - 1, 0)))
        if op == "flip" and body:
            body[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and body:
            body[pos] = draw(st.integers(0, 255))
        elif op == "insert":
            body[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete" and body:
            del body[pos : pos + draw(st.integers(1, 16))]
        elif op == "truncate":
            del body[pos:]
    return bytes(body)


@pytest.mark.slow
@FUZZ
@given(mutated())
def test_mutated_bodies_give_badjob_or_a_valid_job(body):
    decode_or_badjob(body)


@pytest.mark.slow
@FUZZ
@given(mutated((SIGNED,)))
def test_a_signed_body_altered_anywhere_is_refused(body):
    assert envelope.decode(SIGNED, KEYS).id == result(2).id
    if body != SIGNED:
        with pytest.raises(BadJob, match="signature"):
            envelope.decode(body, KEYS)


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=20,
)
FIELDS = [
    "id",
    "path",
    "host",
    "size",
    "mtime",
    "queued_at",
    "status",
    "error",
    "width",
    "height",
    "faces",
    "reencoded",
    "filter",
    "settings",
    "timings",
    "processed_at",
    "attempts",
    "kind",
    "blobs",
]


def split(body: bytes) -> tuple[dict, bytes]:
    _, _, hlen = PREFIX.unpack_from(body)
    return json.loads(body[PREFIX.size : PREFIX.size + hlen]), body[PREFIX.size + hlen :]


@pytest.mark.slow
@FUZZ
@given(st.sampled_from(BODIES), st.dictionaries(st.sampled_from(FIELDS), JSON, min_size=1, max_size=4))
def test_any_header_values_give_badjob_or_a_job_the_store_takes(tmp_path_factory, body, changes):
    header, rest = split(body)
    header.update(changes)
    raw = json.dumps(header).encode()  # NaN and Infinity written as JSON's extensions, as an attacker may
    out = decode_or_badjob(PREFIX.pack(MAGIC, VERSION, len(raw)) + raw + rest)
    if isinstance(out, Result):
        db = store.open_db(tmp_path_factory.mktemp("fuzzdb") / "f.db")
        store.store_results(db, [out])
        db.conn.close()


@pytest.mark.slow
@FUZZ
@given(st.dictionaries(st.sampled_from(FIELDS), JSON, max_size=8))
def test_any_header_at_all_gives_badjob(header):
    raw = json.dumps(header).encode()
    decode_or_badjob(PREFIX.pack(MAGIC, VERSION, len(raw)) + raw)


@pytest.mark.slow
def test_collector_takes_a_batch_of_mutated_bodies_and_never_crashes(beanstalkd, tmp_path):
    rng = random.Random(20261123)
    bodies = []
    for i in range(150):
        body = bytearray(envelope.encode_result(result(1 + i % 3)))
        if i % 5:  # four in five are broken, most in the prefix and header
            header_end = PREFIX.size + PREFIX.unpack_from(body)[2]
            for _ in range(rng.randint(1, 4)):
                pos = rng.randrange(header_end if rng.random() < 0.8 else len(body))
                body[pos] ^= 1 << rng.randrange(8)
        bodies.append(bytes(body))
    valid = {r.id for r in (decode_or_badjob(b) for b in bodies) if r is not None}
    with beanstalkd.client() as c:
        c.use("people")
        for body in bodies:
            c.put(body)
    db = tmp_path / "faces.db"
    proc = run_script("collector.py", "--beanstalkd", beanstalkd.address, "--burst", "--db", db, "--batch", "40")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert {r[0] for r in db_rows(db, "SELECT id FROM images")} == valid
    buried = beanstalkd.tube("people")["current-jobs-buried"]
    stored_jobs = sum(1 for b in bodies if decode_or_badjob(b) is not None)
    assert buried + stored_jobs == len(bodies) and buried >= 60, (buried, stored_jobs)
