"""bench.py --only registry: a people-registry update after new faces, on a big database.

A database of BASE synthetic faces (people: a centre drawn at random, 1 + a geometric
number of faces around it, 2.5 a person on average, within-person distances about 0.35
and between-person about 0.9, as dlib's encodings of lfw-dev people) is stored with the
store's own writes, and its registry is made from the synthetic identities (each face's
tolerance the plain one: clustering a million faces at once is not what is measured).
The registry's coarse cells are made once (timed apart). Then NEW faces are stored, half
of them more photos of people there are and half of new people, and `registry.update`
brings the registry up to date: that is the figure (target: 10,000 new faces on
1,000,000 in 30 s or less). A second update follows on the same database: NEW faces
of EVENT_PEOPLE people there are (an event's photos), whose neighbour search reads only
the cells near those people. Both on a database a tenth as big are measured beside
them, so the ratio shows how the cost grows with the collection.
"""

from __future__ import annotations

import hashlib
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DIM = 128
BETWEEN = 0.055  # per-dimension spread of people's centres (distance between people about 0.9)
WITHIN = 0.022  # per-dimension spread of a person's faces around the centre (about 0.35 apart)
BATCH = 20_000  # faces a stored batch
TARGET_S = 30.0
EVENT_PEOPLE = 100  # the second update: new faces of this many people there are (an event's photos)


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Crowd:
    """Synthetic people and their faces, reproducible from a seed."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.centres: list[np.ndarray] = []

    def new_person(self) -> int:
        self.centres.append(self.rng.normal(0, BETWEEN, DIM).astype(np.float32))
        return len(self.centres) - 1

    def face(self, who: int) -> np.ndarray:
        return self.centres[who] + self.rng.normal(0, WITHIN, DIM).astype(np.float32)

    def faces(self, n: int):
        """(person, encoding) for n faces of new people, 1 + geometric(0.6) faces each (2.5 on average)."""
        made = 0
        while made < n:
            who = self.new_person()
            for _ in range(min(n - made, int(self.rng.geometric(0.6)))):
                yield who, self.face(who)
                made += 1


def result(key: str, encoding: np.ndarray):
    from facegrid.envelope import Face, Result

    return Result(
        id=hashlib.sha256(key.encode()).hexdigest(),
        path=f"/photos/synthetic/{key}.jpg",
        host="synthetic",
        size=1,
        mtime=0.0,
        queued_at=0.0,
        status="ok",
        width=4000,
        height=3000,
        faces=[Face((100, 200, 200, 100), encoding, b"")],
    )


def build(path: Path, crowd: Crowd, n: int) -> None:
    """n faces of new people stored (one face a photo), and the registry made from their identities."""
    from facegrid import registry, store

    db = store.open_db(path)
    owners: list[int] = []
    batch = []
    for who, enc in crowd.faces(n):
        batch.append(result(f"base-{len(owners)}", enc))
        owners.append(who)
        if len(batch) == BATCH:
            store.store_results(db, batch)
            batch = []
    store.store_results(db, batch)
    changes = store.registry_changes(db)
    keys = {who: -(who + 1) for who in dict.fromkeys(owners)}
    owner_of = {hashlib.sha256(f"base-{i}".encode()).hexdigest(): who for i, who in enumerate(owners)}
    assigned = [
        store.Assignment(rowid, image_id, idx, keys[owner_of[image_id]], store.encoding_digest(blob), 0.5)
        for rowid, image_id, idx, blob in changes.new
    ]
    store.apply_registry_update(db, changes, assigned, list(keys.values()))
    t0 = time.perf_counter()
    registry.prepare_cells(db)
    log(f"{n} faces: the registry's cells made once in {time.perf_counter() - t0:.1f}s")
    db.conn.close()


def add_new(path: Path, crowd: Crowd, known: int, n: int, people: int = 0, tag: str = "new") -> None:
    """n new faces: half of them more photos of people there are (the first `known` people), half new;
    or, with people > 0, all of them photos of that many people there are (an event's photos)."""
    from facegrid import store

    db = store.open_db(path)
    rng = np.random.default_rng(7 + people)
    if people:
        who = rng.integers(0, known, people)
        faces = [crowd.face(int(who[i % people])) for i in range(n)]
    else:
        faces = [crowd.face(int(w)) for w in rng.integers(0, known, n // 2)]
        faces += [enc for _, enc in crowd.faces(n - len(faces))]
    store.store_results(db, [result(f"{tag}-{i}", e) for i, e in enumerate(faces)])
    db.conn.close()


def measure(base: int, new: int, folder: Path) -> dict:
    from facegrid import registry, scoring, store

    crowd = Crowd(seed=11)
    path = folder / f"registry-{base}.db"
    log(f"storing {base} synthetic faces and their registry in {path}")
    t0 = time.perf_counter()
    build(path, crowd, base)
    log(f"built in {time.perf_counter() - t0:.0f}s")
    known = len(crowd.centres)
    add_new(path, crowd, known, new)
    db = store.open_db(path)
    t0 = time.perf_counter()
    out = registry.update(db, scoring.Params())
    seconds = time.perf_counter() - t0
    log(f"{base} + {new}: {out.line()}")
    db.conn.close()
    add_new(path, crowd, known, new, people=EVENT_PEOPLE, tag="event")
    db = store.open_db(path)
    t0 = time.perf_counter()
    event = registry.update(db, scoring.Params())
    event_s = time.perf_counter() - t0
    log(f"{base} + {new} of {EVENT_PEOPLE} people: {event.line()}")
    db.conn.close()
    path.unlink()
    for extra in ("-wal", "-shm"):
        Path(f"{path}{extra}").unlink(missing_ok=True)
    return {
        "seconds": seconds,
        "joined": out.joined,
        "created": out.created,
        "faces": out.faces,
        "event_s": event_s,
        "event_joined": event.joined,
    }


def run(args) -> dict:
    quick = getattr(args, "quick", False)
    base = getattr(args, "faces", None) or (100_000 if quick else 1_000_000)
    new = max(100, base // 100)
    with tempfile.TemporaryDirectory(prefix="facegrid-registry-", dir=getattr(args, "tmp", None)) as tmp:
        small = measure(base // 10, new, Path(tmp))
        big = measure(base, new, Path(tmp))
    ok = big["seconds"] <= TARGET_S if base >= 1_000_000 else None
    return {
        f"registry update: {new:,} new faces on {base:,}": (f"{big['seconds']:.1f} s", f"<= {TARGET_S:g} s", ok),
        f"registry update: {new:,} new faces on {base // 10:,}": f"{small['seconds']:.1f} s",
        "registry update: time ratio, 10x the collection": f"{big['seconds'] / small['seconds']:.2f}x",
        f"registry update on {base:,}: new faces into existing persons": f"{big['joined']:,} of {big['faces']:,}",
        f"registry update on {base:,}: new persons made": f"{big['created']:,}",
        f"registry update on {base:,}: new faces a second": f"{new / big['seconds']:,.0f}",
        f"registry update: {new:,} new faces of {EVENT_PEOPLE} people there are, on {base:,}": (
            f"{big['event_s']:.1f} s",
            f"<= {TARGET_S:g} s",
            big["event_s"] <= TARGET_S if base >= 1_000_000 else None,
        ),
        f"registry update: {new:,} new faces of {EVENT_PEOPLE} people there are, on {base // 10:,}": (
            f"{small['event_s']:.1f} s"
        ),
        f"registry update on {base:,}, {EVENT_PEOPLE} people: new faces into existing persons": (
            f"{big['event_joined']:,} of {new:,}"
        ),
    }
