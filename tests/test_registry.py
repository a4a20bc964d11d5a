"""The people registry on real SQLite: stable ids and names, updates in steps, corrections kept.

Faces here are synthetic encodings (a few people, each a cloud of faces around a centre,
as far apart as real people's encodings are), stored with store.store_results as the
collector stores them; the grid test of the same story is in tests/test_people.py.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from facegrid import registry, scoring, store
from facegrid.envelope import Face, Result
from facegrid.errors import UsageError

DIM = 128
PARAMS = scoring.Params()


def result(key: str, encodings: list[np.ndarray]) -> Result:
    return Result(
        id=hashlib.sha256(key.encode()).hexdigest(),
        path=f"/photos/{key}.jpg",
        host="h",
        size=1,
        mtime=0.0,
        queued_at=0.0,
        status="ok" if encodings else "no_faces",
        width=100,
        height=100,
        faces=[Face((10, 20, 30, 0), e.astype(np.float32), b"") for e in encodings],
    )


class People:
    """Centres of synthetic people and faces drawn around them (within-person distance about 0.3)."""

    def __init__(self, n: int, seed: int = 3):
        self.rng = np.random.default_rng(seed)
        self.centres = self.rng.normal(0, 0.09, (n, DIM)).astype(np.float32)

    def face(self, who: int) -> np.ndarray:
        return self.centres[who] + self.rng.normal(0, 0.02, DIM).astype(np.float32)


def store_photos(db, crowd: People, photos: dict[str, list[int]]) -> None:
    store.store_results(db, [result(key, [crowd.face(w) for w in who]) for key, who in photos.items()])


def person_of(db, key: str, idx: int = 0) -> int | None:
    return store.registry_map(db).get((hashlib.sha256(key.encode()).hexdigest(), idx))


def photos_of(db, pid: int) -> set[str]:
    return {f["path"] for f in store.person_faces(db, pid)}


@pytest.fixture
def db(tmp_path):
    out = store.open_db(tmp_path / "faces.db")
    yield out
    out.conn.close()


def first_collection(db, crowd: People) -> None:
    photos = {f"p{w}-{i}": [w] for w in range(4) for i in range(5)}
    photos["group-0"] = [0, 1]
    store_photos(db, crowd, photos)
    first = registry.update(db, PARAMS)
    assert first.first and first.created == 4, first


def test_named_person_gains_new_photos_and_keeps_its_id_and_name(db):
    crowd = People(6)
    first_collection(db, crowd)
    alice = person_of(db, "p2-0")
    assert alice is not None and len(photos_of(db, alice)) == 5
    store.name_person(db, alice, "Alice")
    before = {p["id"]: p["name"] for p in store.persons(db)}
    store_photos(db, crowd, {f"later-2-{i}": [2] for i in range(3)} | {f"new-5-{i}": [5] for i in range(3)})
    step = registry.update(db, PARAMS)
    assert (step.faces, step.joined, step.created) == (6, 3, 1), step
    assert {p["id"]: p["name"] for p in store.persons(db) if p["id"] in before} == before
    assert store.find_person(db, "alice")["id"] == alice
    assert photos_of(db, alice) == {f"/photos/p2-{i}.jpg" for i in range(5)} | {
        f"/photos/later-2-{i}.jpg" for i in range(3)
    }
    newcomer = person_of(db, "new-5-0")
    assert newcomer not in before and photos_of(db, newcomer) == {f"/photos/new-5-{i}.jpg" for i in range(3)}
    again = registry.update(db, PARAMS)  # nothing new: nothing moves
    assert (again.faces, again.created) == (0, 0)


def test_restored_photo_that_loses_a_face_takes_it_from_its_person(db):
    crowd = People(4)
    first_collection(db, crowd)
    bob = person_of(db, "group-0", 1)
    assert bob is not None and "/photos/group-0.jpg" in photos_of(db, bob)
    store_photos(db, crowd, {"group-0": [0]})  # re-processed: one face left
    assert "/photos/group-0.jpg" not in photos_of(db, bob)  # at once, before any update
    registry.update(db, PARAMS)
    assert "/photos/group-0.jpg" not in photos_of(db, bob)
    assert person_of(db, "group-0", 0) == person_of(db, "p0-0")


def test_the_same_result_stored_again_moves_nothing(db):
    crowd = People(4)
    first_collection(db, crowd)
    one, two = person_of(db, "p1-0"), person_of(db, "p1-1")
    moved = store.split_person(db, one, [(hashlib.sha256(b"p1-0").hexdigest(), 0)])
    rows = {r[0]: r for r in db.execute("SELECT image_id, encoding FROM faces")}
    again = [
        result(k, [np.frombuffer(rows[hashlib.sha256(k.encode()).hexdigest()][1], "<f4")]) for k in ("p1-0", "p1-1")
    ]
    store.store_results(db, again)  # redelivered: same encodings, a newer generation
    step = registry.update(db, PARAMS)
    assert step.faces == 0, step
    assert person_of(db, "p1-0") == moved["id"] and person_of(db, "p1-1") == two


def test_merge_split_and_reject_survive_an_update(db):
    crowd = People(5)
    first_collection(db, crowd)
    a, b, c = person_of(db, "p0-0"), person_of(db, "p1-0"), person_of(db, "p3-0")
    merged = store.merge_persons(db, a, [b])
    assert merged["id"] == a and store.get_person(db, b) is None
    split = store.split_person(db, c, [(hashlib.sha256(f"p3-{i}".encode()).hexdigest(), 0) for i in (0, 1)])
    rejected = (hashlib.sha256(b"p3-4").hexdigest(), 0)
    assert store.reject_faces(db, c, [rejected]) == 1
    store_photos(db, crowd, {f"more-{w}-{i}": [w] for w in (0, 1, 3) for i in range(2)})
    registry.update(db, PARAMS)
    assert person_of(db, "p1-2") == a and person_of(db, "more-1-0") == a  # b's faces and its new ones: in a
    assert person_of(db, "p3-0") == split["id"] and person_of(db, "p3-1") == split["id"]
    assert person_of(db, "p3-2") == c
    placed = person_of(db, "p3-4")
    assert placed is not None and placed != c  # rejected: the update put it elsewhere, never back
    registry.update(db, PARAMS)
    assert person_of(db, "p3-4") == placed


def test_forget_keeps_the_faces_out(db):
    crowd = People(4)
    first_collection(db, crowd)
    d = person_of(db, "p3-0")
    assert store.forget_person(db, d) == 5
    registry.update(db, PARAMS)
    assert store.get_person(db, d) is None and person_of(db, "p3-0") is None
    with pytest.raises(UsageError, match="no person"):
        store.find_person(db, str(d))


def test_names_that_match_nothing_or_two_persons_are_refused(db):
    crowd = People(4)
    first_collection(db, crowd)
    ids = [p["id"] for p in store.persons(db)]
    store.name_person(db, ids[0], "Sam")
    store.name_person(db, ids[1], "sam")
    with pytest.raises(UsageError, match="no person 'Nobody'"):
        store.find_person(db, "Nobody")
    assert store.find_person(db, "Sam")["id"] == ids[0]  # the exact name first
    with pytest.raises(UsageError, match="2 persons are named 'SAM'"):
        store.find_person(db, "SAM")
    with pytest.raises(UsageError, match="printable"):
        store.name_person(db, ids[0], "\x1b[2J")


def test_a_schema_3_database_gains_the_registry(tmp_path):
    path = tmp_path / "old.db"
    db = store.open_db(path)
    for table in ("persons", "person_faces", "person_rejects", "person_cells"):
        db.execute(f"DROP TABLE {table}")
    db.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")
    db.conn.close()
    ro = store.open_readonly(path)  # a search on it: no persons, nothing written
    assert store.persons(ro) == [] and store.persons_of_faces(ro, [("x", 0)]) == {}
    ro.conn.close()
    db = store.open_db(path)
    assert store.get_meta(db, "schema_version") == str(store.SCHEMA_VERSION)
    assert {"persons", "person_faces", "person_rejects", "person_cells"} <= set(db.table_names())


@pytest.mark.parametrize("probes", [32, 2])  # every cell, or 2 of the 4: only their faces are read
def test_past_the_exact_limit_the_cells_give_the_same_persons(db, monkeypatch, probes):
    crowd = People(40, seed=5)
    photos = {f"p{w}-{i}": [w] for w in range(30) for i in range(6)}
    store_photos(db, crowd, photos)
    monkeypatch.setattr(registry, "EXACT_LIMIT", 100)  # cells from 100 faces on, not 50,000
    monkeypatch.setattr(registry, "NPROBE", probes)
    registry.update(db, PARAMS)
    assert store.registry_cells(db) is not None
    store_photos(db, crowd, {f"later-{w}-{i}": [w] for w in range(25, 40) for i in range(3)})
    registry.update(db, PARAMS)
    for w in range(25, 30):
        assert person_of(db, f"later-{w}-0") == person_of(db, f"p{w}-0")
    assert len(store.persons(db)) == 40


def test_a_person_gets_one_face_of_a_photo(db):
    crowd = People(4)
    first_collection(db, crowd)
    store_photos(db, crowd, {"mirror": [1, 1]})  # the same person twice in one photo (a mirror)
    registry.update(db, PARAMS)
    one, two = person_of(db, "mirror", 0), person_of(db, "mirror", 1)
    assert person_of(db, "p1-0") in (one, two) and one != two


def test_new_photos_of_a_person_with_one_photo_join_it(db):
    crowd = People(6)
    first_collection(db, crowd)
    store_photos(db, crowd, {"lone": [5]})
    registry.update(db, PARAMS)
    lone = person_of(db, "lone")
    store_photos(db, crowd, {"lone-2": [5], "lone-3": [5]})  # each joined to the other as much as to it
    step = registry.update(db, PARAMS)
    assert step.joined == 2 and person_of(db, "lone-2") == lone and person_of(db, "lone-3") == lone, step


def test_many_new_photos_of_a_person_join_it_not_a_new_person(db):
    crowd = People(30, seed=9)
    store_photos(db, crowd, {f"one-{w}": [w] for w in range(30)})  # 30 people, one photo each
    registry.update(db, PARAMS)
    store_photos(db, crowd, {f"event-{i}": [i % 10] for i in range(1000)})  # 100 each: they outvote it
    step = registry.update(db, PARAMS)
    assert step.created == 0, step
    assert all(person_of(db, f"event-{i}") == person_of(db, f"one-{i % 10}") for i in range(1000))


def test_a_new_face_no_member_reaches_joins_the_person_whose_profile_finds_it(db):
    """As clustering at once does (tests/test_scoring.py): four photos of one person, pairwise 0.42
    apart; a later face 0.45 from their mean but 0.54 from each of them joins that person, and one
    0.55 from it makes a person of its own."""
    unit = np.eye(DIM, dtype=np.float32)
    c = 0.3 * unit[0]
    p = scoring.Params(lookalike_count=0)
    store.store_results(db, [result(f"p-{k}", [c + 0.3 * unit[k]]) for k in range(1, 5)])
    first = registry.update(db, p)
    assert first.created == 1
    person = person_of(db, "p-1")
    store.store_results(db, [result("near", [c + 0.45 * unit[5]]), result("far", [c + 0.55 * unit[6]])])
    later = registry.update(db, p)
    assert person_of(db, "near") == person
    assert person_of(db, "far") not in (None, person)
    assert later.joined == 1 and later.created == 1, later
