"""Forged and hostile jobs against the real scripts and a real beanstalkd.

beanstalkd has no authentication: anyone who reaches its port can put any body
on any tube. These tests play that attacker. Genuine results are made once by
the real queuer and filter; each test forges bodies from them, puts them beside
genuine ones, and runs the real collector (and search.py) on them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import signal
import sqlite3

import oddphotos
import pytest
from conftest import Beanstalkd, db_rows, run_script

from facegrid import envelope
from facegrid.envelope import MAGIC, PREFIX, VERSION, ImageJob, Result

pytestmark = pytest.mark.slow  # starts grids

FACES_USED = ["people/obama/obama.jpg", "people/biden/biden.jpg"]
KEY = "3f1a9c0e5b7d2468ace13579bdf02468"
OLD_KEY = "0123456789abcdef0123456789abcdef"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def raw_body(header: dict, blobs: list[tuple[str, bytes]]) -> bytes:
    """An envelope built by hand: any header at all, NaN and 10**30 included."""
    header = dict(header, blobs=[{"name": n, "length": len(b)} for n, b in blobs])
    raw = json.dumps(header).encode()
    return PREFIX.pack(MAGIC, VERSION, len(raw)) + raw + b"".join(b for _, b in blobs)


def result_header(res: Result) -> tuple[dict, list[tuple[str, bytes]]]:
    """The header and blobs encode_result would make, to be tampered with."""
    return split_body(envelope.encode_result(res))


def split_body(body: bytes) -> tuple[dict, list[tuple[str, bytes]]]:
    _, _, hlen = PREFIX.unpack_from(body)
    header = json.loads(body[PREFIX.size : PREFIX.size + hlen])
    blobs, pos = [], PREFIX.size + hlen
    for spec in header.pop("blobs"):
        blobs.append((spec["name"], body[pos : pos + spec["length"]]))
        pos += spec["length"]
    return header, blobs


@pytest.fixture(scope="module")
def genuine(tmp_path_factory, faces_dir) -> dict:
    """Two genuine results made by the real queuer and filter, and their photos."""
    work = tmp_path_factory.mktemp("genuine")
    photos = work / "photos"
    photos.mkdir()
    for i, rel in enumerate(FACES_USED):
        oddphotos.unique_copy(faces_dir / rel, photos / f"p{i}.jpg", 900 + i)
    server = Beanstalkd(work / "binlog").start()
    try:
        addr = ["--beanstalkd", server.address]
        run_script("queuer.py", *addr, "--state", work / "q.sqlite", photos, check=True)
        run_script("filter.py", *addr, "--burst", check=True, timeout=600)
        with server.client() as c:
            c.watch("people")
            results = []
            for _ in FACES_USED:
                job = c.reserve(timeout=10)
                result = envelope.decode(job.body)
                assert isinstance(result, envelope.Result)
                results.append(result)
                c.delete(job)
    finally:
        server.stop(signal.SIGKILL)
    results.sort(key=lambda r: r.path)
    assert [r.status for r in results] == ["ok", "ok"]
    return {"results": results, "photos": photos}


def put_all(server: Beanstalkd, tube: str, bodies) -> None:
    with server.client() as c:
        c.use(tube)
        for body in bodies:
            c.put(body)


def collect(server: Beanstalkd, db, *extra, env=None):
    proc = run_script("collector.py", "--beanstalkd", server.address, "--burst", "--db", db, *extra, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return proc


def buried_lines(proc) -> list[str]:
    return [ln for ln in proc.stderr.splitlines() if "burying job" in ln]


# forged results that used to crash or fool the collector ------------------------------------
def forgeries(real: Result) -> dict[str, bytes]:
    header, blobs = result_header(real)
    names = dict(blobs)
    one_face = [(n, b) for n, b in blobs if n in ("annotated", "crop:0")] + [
        ("encodings", names["encodings"][: envelope.ENCODING_BYTES])
    ]
    base = dict(header, faces=header["faces"][:1])

    def variant(**changes):
        return raw_body(dict(base, id=sha(json.dumps(changes, sort_keys=True, default=str)), **changes), one_face)

    box = base["faces"][0]["box"]
    many = 10_000
    return {
        "box 10**30": variant(faces=[{"box": [box[0], 10**30, box[2], box[3]]}]),
        "size 10**30": variant(size=10**30),
        "NaN mtime": raw_body(dict(base, id=sha("nan"), mtime=float("nan")), one_face),
        "Infinity queued_at": raw_body(dict(base, id=sha("inf"), queued_at=float("inf")), one_face),
        "width -5": variant(width=-5),
        "box outside the photo": variant(faces=[{"box": [0, base["width"] + 50, 10, 0]}]),
        "10,000 faces": raw_body(
            dict(base, id=sha("many"), faces=[{"box": box}] * many),
            [("encodings", names["encodings"][: envelope.ENCODING_BYTES] * many)],
        ),
        "control characters in host": variant(host="h\x1b[2J"),
        "annotated is not a JPEG": raw_body(
            dict(base, id=sha("annot")), [("annotated", b"GIF89a" + b"\0" * 64)] + one_face[1:]
        ),
        "crop is not a JPEG": raw_body(
            dict(base, id=sha("crop")), [(n, b if n != "crop:0" else b"\xff\xd8\xffnot really") for n, b in one_face]
        ),
        "ok without faces": variant(faces=[], status="ok"),
        "attempts -1": variant(attempts=-1),
        "a 5,000-character host": variant(host="h" * 5000),
        "deeply nested header": PREFIX.pack(MAGIC, VERSION, 20_002) + b"[" * 10_001 + b"]" * 10_001,
    }


def test_forged_results_are_buried_and_the_batch_around_them_is_stored(beanstalkd, genuine, tmp_path):
    real = genuine["results"]
    bad = forgeries(real[0])
    put_all(
        beanstalkd, "people", [envelope.encode_result(real[0])] + list(bad.values()) + [envelope.encode_result(real[1])]
    )
    db = tmp_path / "faces.db"
    proc = collect(beanstalkd, db, "--batch", "64")
    assert sorted(r[0] for r in db_rows(db, "SELECT id FROM images")) == sorted(r.id for r in real)
    lines = buried_lines(proc)
    assert len(lines) == len(bad), "\n".join(lines)
    assert beanstalkd.tube("people")["current-jobs-buried"] == len(bad)
    log = proc.stderr
    for reason in (
        "'size' is 1000000000000000000000000000000, outside 0..",
        "which is not a number JSON allows",
        "'width' is -5",
        "not inside the",
        "10000 faces, over the 1000",
        "control characters",
        "annotated blob is not a JPEG",
        "crop 0 is not",
        "does not agree with 0 face",
        "'attempts' is -1",
        "over the 255 allowed",
        "not UTF-8 JSON",
    ):
        assert reason in log, (reason, lines)
    assert "\x1b" not in log  # the hostile host is escaped in the log line, not sent to the terminal


def test_a_forgery_relayed_through_the_images_tube_is_buried_by_the_filter(beanstalkd, tmp_path, faces_dir):
    photo = (faces_dir / FACES_USED[0]).read_bytes()
    good = ImageJob(
        id=hashlib.sha256(photo).hexdigest(),
        path="/p/a.jpg",
        host="h",
        size=len(photo),
        mtime=1.0,
        queued_at=2.0,
        image=photo,
    )
    header, _ = split_body(envelope.encode_image_job(good))
    put_all(
        beanstalkd,
        "images",
        [
            raw_body(dict(header, size=10**30), [("image", photo)]),
            raw_body(dict(header, mtime=float("nan")), [("image", photo)]),
            raw_body(dict(header, id=sha("not these bytes")), [("image", photo)]),  # bytes are not the photo named
            raw_body(dict(header, path="/etc/passwd"), [("image", b"root:x:0:0:root:/root:/bin/bash\n")]),
        ],
    )
    filt = run_script("filter.py", "--beanstalkd", beanstalkd.address, "--burst", timeout=600)
    assert filt.returncode == 0 and "Traceback" not in filt.stderr, filt.stderr[-3000:]
    assert len(buried_lines(filt)) == 4, filt.stderr[-3000:]
    assert beanstalkd.tube("people")["current-jobs-ready"] == 0  # nothing relayed to the collector
    for reason in (
        "'size' is 1000000000000000000000000000000",
        "not a number JSON allows",
        "sha256 is not the job's id",
        "bytes but the job says size",
    ):
        assert reason in filt.stderr, reason


def test_a_result_the_database_refuses_is_buried_alone(beanstalkd, genuine, tmp_path):
    """A result that decodes but cannot be stored (here: a trigger refuses it) is buried; the rest is stored."""
    real = genuine["results"]
    db = tmp_path / "faces.db"
    collect(beanstalkd, db)  # makes the schema
    conn = sqlite3.connect(db)
    conn.execute(
        "CREATE TRIGGER refuse BEFORE INSERT ON images WHEN NEW.path LIKE '%refused%' "
        "BEGIN SELECT RAISE(ABORT, 'this row is refused'); END"
    )
    conn.commit()
    conn.close()
    refused = dataclasses.replace(real[0], id=sha("refused"), path="/photos/refused\x1b[31m.jpg")
    put_all(beanstalkd, "people", [envelope.encode_result(r) for r in (real[0], refused, real[1])])
    proc = collect(beanstalkd, db)
    assert sorted(r[0] for r in db_rows(db, "SELECT id FROM images")) == sorted(r.id for r in real)
    lines = buried_lines(proc)
    assert len(lines) == 1 and "this row is refused" in lines[0] and "\\x1b[31m" in lines[0], lines
    assert beanstalkd.tube("people")["current-jobs-buried"] == 1
    listing = run_script("scripts/buried", "list", "--beanstalkd", beanstalkd.address, "--db", db)
    assert listing.returncode == 0, listing.stderr
    assert "refused\\x1b[31m.jpg" in listing.stdout and "\x1b" not in listing.stdout


# signed jobs ----------------------------------------------------------------------------------
def key_file(tmp_path, *keys: str):
    path = tmp_path / "grid.key"
    path.write_text("# facegrid grid key; first line signs\n" + "".join(k + "\n" for k in keys))
    path.chmod(0o600)
    return path


def test_signed_grid_stores_its_own_jobs_and_buries_every_forgery(beanstalkd, faces_dir, tmp_path):
    keys = key_file(tmp_path, KEY)
    photos = tmp_path / "photos"
    photos.mkdir()
    data = oddphotos.unique_copy(faces_dir / FACES_USED[0], photos / "real.jpg", 77).read_bytes()
    addr = ["--beanstalkd", beanstalkd.address]
    key = ["--set", f"grid.key_file={keys}"]
    env = dict(os.environ, FACEGRID_KEY_FILE=str(keys))  # the filter gets its key from the environment
    q = run_script("queuer.py", *addr, *key, "--state", tmp_path / "q.sqlite", photos, check=True)
    assert "jobs are not signed" not in q.stderr
    # forged image jobs: unsigned, signed with another key, and a signed job altered on the way
    job = ImageJob(
        id=hashlib.sha256(data).hexdigest(),
        path="/forged/a.jpg",
        host="evil",
        size=len(data),
        mtime=1.0,
        queued_at=2.0,
        image=data,
    )
    signed = envelope.encode_image_job(job, envelope.Keyring([KEY.encode()]))
    altered = signed.replace(b"/forged/a.jpg", b"/forged/b.jpg")
    other = envelope.encode_image_job(job, envelope.Keyring([b"another key, not the grid's"]))
    put_all(beanstalkd, "images", [envelope.encode_image_job(job), altered, other])
    f = run_script("filter.py", *addr, "--burst", env=env, timeout=600)
    assert f.returncode == 0 and "jobs are not signed" not in f.stderr, f.stderr[-2000:]
    lines = buried_lines(f)
    assert len(lines) == 3 and all("missing or wrong signature" in ln for ln in lines), lines
    with beanstalkd.client() as c:  # the genuine result, to forge from
        c.watch("people")
        genuine_job = c.reserve(timeout=10)
        real = envelope.decode(genuine_job.body, envelope.Keyring([KEY.encode()]))
        c.release(genuine_job)
    assert envelope.SIG_BLOB.encode() in genuine_job.body
    db = tmp_path / "faces.db"
    collect(beanstalkd, db, *key)
    # a forged result that reuses the stored photo's id, unsigned and signed with a wrong key
    forged = dataclasses.replace(real, path="../../etc/passwd", host="evil")
    put_all(
        beanstalkd,
        "people",
        [envelope.encode_result(forged), envelope.encode_result(forged, envelope.Keyring([OLD_KEY.encode()]))],
    )
    c = collect(beanstalkd, db, *key)
    assert len(buried_lines(c)) == 2 and "missing or wrong signature" in c.stderr
    assert db_rows(db, "SELECT id, path, host FROM images") == [(real.id, real.path, real.host)]
    assert beanstalkd.tube("images")["current-jobs-buried"] == 3
    assert beanstalkd.tube("people")["current-jobs-buried"] == 2


def test_key_rotation_first_key_signs_every_key_verifies(beanstalkd, genuine, tmp_path):
    real = genuine["results"]
    new, old, retired = KEY, OLD_KEY, "fedcba9876543210fedcba9876543210"
    put_all(
        beanstalkd,
        "people",
        [
            envelope.encode_result(real[0], envelope.Keyring([old.encode()])),  # from a host not yet rotated
            envelope.encode_result(real[1], envelope.Keyring([retired.encode()])),  # a key taken out of the file
        ],
    )
    db = tmp_path / "faces.db"
    proc = collect(beanstalkd, db, "--set", f"grid.key_file={key_file(tmp_path, new, old)}")
    assert db_rows(db, "SELECT id FROM images") == [(real[0].id,)]
    assert len(buried_lines(proc)) == 1 and "missing or wrong signature" in proc.stderr
    # what the rotated grid signs now carries the new key: a host that only knows the old key refuses it
    body = envelope.encode_result(real[1], envelope.load_keys(key_file(tmp_path, new, old)))
    assert envelope.decode(body, envelope.Keyring([new.encode()])).id == real[1].id
    with pytest.raises(envelope.BadJob, match="signature"):
        envelope.decode(body, envelope.Keyring([old.encode()]))


def test_unsigned_grid_warns_once_per_role_and_bad_key_files_are_usage_errors(beanstalkd, tmp_path):
    db = tmp_path / "faces.db"
    proc = collect(beanstalkd, db)
    assert proc.stderr.count("jobs are not signed") == 1
    for content, why in (("", "holds no key"), ("short\n", "fewer than 16")):
        path = tmp_path / "bad.key"
        path.write_text(content)
        p = run_script(
            "collector.py", "--beanstalkd", beanstalkd.address, "--burst", "--db", db, "--set", f"grid.key_file={path}"
        )
        assert p.returncode == 2 and why in p.stderr and "Traceback" not in p.stderr, p.stderr
    p = run_script(
        "queuer.py",
        "--beanstalkd",
        beanstalkd.address,
        "--set",
        f"grid.key_file={tmp_path / 'none'}",
        "--state",
        tmp_path / "q.sqlite",
        tmp_path,
    )
    assert p.returncode == 2 and "cannot read it" in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
