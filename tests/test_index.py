"""The search index follows the database in steps: append, update, delete, merge, race.

Real SQLite databases written through store.store_results, as the collector does;
every check compares the index with the faces read straight from the database.
"""

from __future__ import annotations

import json
import logging
import shutil
import sqlite3
import threading
import time

import numpy as np
from factories import result

from facegrid import index, store

DIM = 128


def faces_of(rng, n: int) -> list[np.ndarray]:
    return [rng.normal(0, 0.1, DIM).astype(np.float32) for _ in range(n)]


def truth(db_path, target: np.ndarray) -> dict[int, float]:
    """rowid -> distance, read straight from the database."""
    con = sqlite3.connect(db_path)
    out = {
        r: float(np.linalg.norm(np.frombuffer(e, "<f4") - target))
        for r, e in con.execute("SELECT rowid, encoding FROM faces")
    }
    con.close()
    return out


def indexed(idx: index.FaceIndex, target: np.ndarray) -> dict[int, float]:
    """rowid -> distance of every live face, by the path search takes (near, a radius past every face)."""
    got = idx.near(target, "mean", 10.0)
    return {int(idx.rowids[p]): float(d) for p, d in zip(got.positions, got.dist, strict=True)}


def same(a: dict[int, float], b: dict[int, float]) -> bool:
    return a.keys() == b.keys() and all(abs(a[k] - b[k]) < 1e-4 for k in a)


def test_new_faces_are_appended_without_a_rebuild(tmp_path):
    rng = np.random.default_rng(1)
    path = tmp_path / "f.db"
    db = store.open_db(path)
    store.store_results(db, [result(f"a{i}", faces_of(rng, 2)) for i in range(100)])
    first = index.load(db, path)
    assert len(first) == 200 and len(first.segments) == 1
    base = first.segments[0].folder
    store.store_results(db, [result(f"b{i}", faces_of(rng, 1)) for i in range(30)])
    idx = index.load(db, path)
    assert [s.folder for s in idx.segments][0] == base, "the first segment was kept, not rebuilt"
    assert len(idx.segments) == 2 and len(idx.segments[1]) == 30
    target = rng.normal(0, 0.1, DIM).astype(np.float32)
    assert same(indexed(idx, target), truth(path, target))
    assert index.load(db, path).generation == store.generation(db)  # up to date: opened as it is


def test_a_reprocessed_photo_replaces_and_removes_its_faces(tmp_path):
    rng = np.random.default_rng(2)
    path = tmp_path / "f.db"
    db = store.open_db(path)
    old = faces_of(rng, 3)
    store.store_results(db, [result("p", old)] + [result(f"x{i}", faces_of(rng, 1)) for i in range(20)])
    index.load(db, path)
    new = faces_of(rng, 1)  # the photo again, now with one (different) face
    store.store_results(db, [result("p", new)])
    idx = index.load(db, path)
    assert idx.live_count() == 21
    for gone in old:
        assert min(indexed(idx, gone).values()) > 1e-3, "an old encoding is still found"
    assert min(indexed(idx, new[0]).values()) < 1e-5
    target = rng.normal(0, 0.1, DIM).astype(np.float32)
    assert same(indexed(idx, target), truth(path, target))


def test_many_updates_merge_and_a_mostly_dead_index_is_rebuilt(tmp_path):
    rng = np.random.default_rng(3)
    path = tmp_path / "f.db"
    db = store.open_db(path)
    store.store_results(db, [result(f"a{i}", faces_of(rng, 1)) for i in range(200)])
    index.load(db, path)
    for step in range(index.MAX_SEGMENTS + 3):
        store.store_results(db, [result(f"s{step}-{i}", faces_of(rng, 1)) for i in range(5)])
        idx = index.load(db, path)
        assert len(idx.segments) <= index.MAX_SEGMENTS
    target = rng.normal(0, 0.1, DIM).astype(np.float32)
    assert same(indexed(idx, target), truth(path, target))
    # replace most faces: past MAX_DEAD_SHARE dead rows, the index is built again as one segment
    store.store_results(db, [result(f"a{i}", faces_of(rng, 1)) for i in range(150)])
    idx = index.load(db, path)
    assert len(idx.segments) == 1 and len(idx) == idx.live_count() == 255
    assert same(indexed(idx, target), truth(path, target))


def test_another_database_at_the_same_path_gets_its_own_index(tmp_path):
    rng = np.random.default_rng(4)
    one, two = tmp_path / "one.db", tmp_path / "two.db"
    for p in (one, two):
        store.store_results(store.open_db(p), [result(f"{p.name}{i}", faces_of(rng, 1)) for i in range(10)])
    db = store.open_db(one)
    index.load(db, one)
    db.conn.close()
    for suffix in ("", "-wal", "-shm"):
        (tmp_path / f"one.db{suffix}").unlink(missing_ok=True)
    shutil.copy(two, one)  # same generation, same path, other faces
    db = store.open_db(one)
    target = rng.normal(0, 0.1, DIM).astype(np.float32)
    assert same(indexed(index.load(db, one), target), truth(one, target))


def test_a_search_racing_the_collector_sees_whole_batches(tmp_path):
    rng = np.random.default_rng(5)
    path = tmp_path / "f.db"
    writer = store.open_db(path, threads=True)
    store.store_results(writer, [result(f"a{i}", faces_of(rng, 1)) for i in range(50)])
    batches = [[result(f"b{k}-{i}", faces_of(rng, 1)) for i in range(7)] for k in range(40)]
    done = threading.Event()

    def collector():
        for batch in batches:
            store.store_results(writer, batch)
        done.set()

    thread = threading.Thread(target=collector)
    thread.start()
    reader = store.open_db(path)
    seen = []
    target = rng.normal(0, 0.1, DIM).astype(np.float32)
    deadline = time.monotonic() + 120
    while not done.is_set() or not seen or seen[-1][0] < store.generation(reader):
        assert time.monotonic() < deadline, f"the index never caught up with the collector: {seen[-5:]}"
        idx = index.load(reader, path)
        # generation 1 stored 50 faces, and every later one 7: a snapshot holds whole batches
        assert idx.live_count() == 50 + 7 * (idx.generation - 1), (idx.generation, idx.live_count())
        seen.append((idx.generation, idx.live_count()))
    thread.join()
    assert seen[-1] == (41, 50 + 7 * 40)
    assert len({g for g, _ in seen}) > 2, f"the search never ran while the collector wrote: {seen}"
    assert same(indexed(index.load(reader, path), target), truth(path, target))


def test_a_schema_1_database_is_migrated_in_place(tmp_path):
    path = tmp_path / "old.db"
    con = sqlite3.connect(path)
    con.executescript("""
        CREATE TABLE images (id TEXT PRIMARY KEY, path TEXT, host TEXT, size INTEGER, mtime FLOAT, width INTEGER,
          height INTEGER, status TEXT NOT NULL, error TEXT, face_count INTEGER, settings TEXT, filter_host TEXT,
          filter_pid INTEGER, filter_version TEXT, timings TEXT, reencoded TEXT, attempts INTEGER, queued_at FLOAT,
          processed_at FLOAT, stored_at FLOAT, envelope_version INTEGER);
        CREATE TABLE faces (image_id TEXT, idx INTEGER, top INTEGER, right INTEGER, bottom INTEGER, left INTEGER,
          encoding BLOB, crop BLOB, model TEXT, PRIMARY KEY (image_id, idx));
        CREATE TABLE annotated (image_id TEXT PRIMARY KEY, jpeg BLOB);
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
        INSERT INTO meta VALUES ('schema_version', '1'), ('generation', '3');
    """)
    con.execute("INSERT INTO faces VALUES ('x', 0, 1, 2, 3, 0, ?, x'', 'hog')", [np.ones(DIM, "<f4").tobytes()])
    con.commit()
    con.close()
    db = store.open_db(path)
    assert store.get_meta(db, "schema_version") == str(store.SCHEMA_VERSION)
    assert store.db_id(db) and store.has_change_log(db)
    assert db.execute("SELECT gen FROM faces").fetchall() == [(0,)]
    rng = np.random.default_rng(6)
    index.load(db, path)
    store.store_results(db, [result("n", faces_of(rng, 2))])
    idx = index.load(db, path)
    assert len(idx.segments) == 2 and idx.live_count() == 3


def test_an_update_reads_only_what_changed_and_opens_masks_in_place(tmp_path):
    """Untouched segments keep their live masks (same file); the masks open memory-mapped; nothing is concatenated."""
    rng = np.random.default_rng(7)
    path = tmp_path / "f.db"
    db = store.open_db(path)
    store.store_results(db, [result(f"a{i}", faces_of(rng, 2)) for i in range(120)])
    index.load(db, path)
    store.store_results(db, [result("a0", faces_of(rng, 1))])  # replaces two faces of the first segment
    idx = index.load(db, path)
    meta = index.manifest(index.index_dir(path))
    first = meta["segments"][0]
    assert first["dead"] == 2 and isinstance(idx.segments[0].live, np.memmap)
    assert int((~np.asarray(idx.segments[0].live)).sum()) == 2
    mask = first["live"]
    store.store_results(db, [result(f"b{i}", faces_of(rng, 1)) for i in range(10)])  # new photos: nothing replaced
    idx = index.load(db, path)
    meta = index.manifest(index.index_dir(path))
    assert meta["segments"][0]["live"] == mask, "an untouched segment's mask was rewritten"
    assert all("live" not in e for e in meta["segments"][1:])
    assert isinstance(idx.rowids, index.Ids) and len(idx.rowids) == len(idx) == 120 * 2 + 1 + 10
    assert list(idx.rowids) == list(np.asarray(idx.rowids)) == [int(idx.rowids[i]) for i in range(len(idx))]
    assert idx.rowids[np.array([0, len(idx) - 1])].tolist() == [idx.rowids[0], idx.rowids[len(idx) - 1]]
    assert idx.live_count() == 120 * 2 - 2 + 1 + 10
    target = rng.normal(0, 0.1, DIM).astype(np.float32)
    assert same(indexed(idx, target), truth(path, target))
    # the same rows deleted twice count once
    store.store_results(db, [result("a0", faces_of(rng, 1))])
    idx = index.load(db, path)
    assert index.manifest(index.index_dir(path))["segments"][0]["dead"] == 2
    assert same(indexed(idx, target), truth(path, target))


def test_an_index_in_the_old_format_is_built_again(tmp_path):
    rng = np.random.default_rng(8)
    path = tmp_path / "f.db"
    db = store.open_db(path)
    store.store_results(db, [result(f"a{i}", faces_of(rng, 1)) for i in range(30)])
    index.load(db, path)
    folder = index.index_dir(path)
    meta = index.manifest(folder)
    (folder / "manifest.json").write_text(json.dumps(dict(meta, format=2)))
    store.store_results(db, [result(f"b{i}", faces_of(rng, 1)) for i in range(5)])
    idx = index.load(db, path)
    assert len(idx.segments) == 1 and len(idx) == 35


def test_the_update_searches_faces_by_generation_not_by_a_scan(tmp_path):
    """An update must cost the new faces, not the table: its query uses the faces_gen index."""
    path = tmp_path / "f.db"
    db = store.open_db(path)
    store.store_results(db, [result(f"a{i}", faces_of(np.random.default_rng(9), 1)) for i in range(20)])
    plan = " ".join(str(row[-1]) for row in db.execute("EXPLAIN QUERY PLAN " + store.CHANGED_SQL, [0]))
    assert "USING INDEX faces_gen" in plan, plan


# -- short codes per big segment (projection + 8-bit codes, faiss) and the exact re-rank ----------------------------
def people_faces(rng, people: int, per: int) -> list[list[np.ndarray]]:
    """Faces shaped like real ones: people ~0.9 apart, groups of look-alikes ~0.45 apart, photos of one
    person ~0.4 apart; so the look-alike rule, the expansion and the radius all have work to do."""
    groups = rng.normal(0, 0.056, (max(1, people // 4), DIM))
    centres = groups[rng.integers(0, len(groups), people)] + rng.normal(0, 0.028, (people, DIM))
    return [[(c + rng.normal(0, 0.025, DIM)).astype(np.float32) for _ in range(per)] for c in centres]


def near_truth(db_path, target: np.ndarray, radius: float) -> dict[int, float]:
    return {r: d for r, d in truth(db_path, target).items() if d <= radius}


def near_of(idx: index.FaceIndex, target: np.ndarray, radius: float) -> dict[int, float]:
    got = index.FaceIndex.joined([idx], SEARCH).near(target, "mean", radius)
    return {int(idx.rowids[p]): float(d) for p, d in zip(got.positions, got.dist, strict=True)}


def coded_layout(rows: int = 500) -> index.CodeLayout:
    """Segments of `rows` faces or more get short codes (the production threshold is 100,000), in files of
    at most 400 rows; with SEARCH, a search asks each file for 16 neighbours first: so the files are read
    side by side and the search must ask for more, as at scale (1,000,000 rows a file, KNN_FIRST = 4,096 neighbours)."""
    return index.CodeLayout(min_rows=rows, part_rows=400)


SEARCH = index.SearchOptions(knn_first=16)


def codes_of(seg: index.Segment) -> np.ndarray:
    parts = seg.short_codes()
    assert parts is not None, "a segment without short codes"
    return np.concatenate([index.codes_of(part) for _, part in parts])


def test_the_short_codes_follow_append_update_delete_and_merge(tmp_path):
    layout = coded_layout()
    rng = np.random.default_rng(21)
    path = tmp_path / "f.db"
    db = store.open_db(path)
    faces = people_faces(rng, 300, 4)
    store.store_results(db, [result(f"a{i}", person[:2]) for i, person in enumerate(faces)])
    idx = index.load(db, path, layout)
    assert idx.segments[0].short_codes() is not None, "a big segment has its short codes"
    assert (index.index_dir(path) / index.TRAINED_FILE).exists()
    head = idx.segments[0].folder
    probes = [p[3] for p in faces[:25]]

    def check(idx):
        for q in probes:
            assert same(near_of(idx, q, 0.625), near_truth(path, q, 0.625))

    check(idx)
    # append: a small segment, scanned
    store.store_results(db, [result(f"b{i}", [faces[i][2]]) for i in range(60)])
    idx = index.load(db, path, layout)
    assert len(idx.segments) == 2 and idx.segments[1].short_codes() is None
    check(idx)
    # update: photo a0 again with another face; its old face is dead in the coded segment
    old = faces[0][0]
    store.store_results(db, [result("a0", [faces[0][3]])])
    idx = index.load(db, path, layout)
    assert not any(abs(d) < 1e-5 for d in near_of(idx, old, 0.1).values()), "a replaced face is still found"
    check(idx)
    # delete: a photo now without faces
    store.store_results(db, [result("a1", [])])
    idx = index.load(db, path, layout)
    assert not near_of(idx, faces[1][0], 1e-3)
    check(idx)
    # merge: enough small updates that the tail is merged into a segment big enough for its own short codes
    for step in range(index.MAX_SEGMENTS + 2):
        store.store_results(db, [result(f"s{step}-{i}", faces_of(rng, 1)) for i in range(120)])
        idx = index.load(db, path, layout)
        assert len(idx.segments) <= index.MAX_SEGMENTS
        check(idx)
    assert any(s.short_codes() is not None and s.folder != head for s in idx.segments), "a merge made none"
    assert idx.live_count() == store.face_count(db)


def test_a_search_through_the_short_codes_equals_the_exact_scan(tmp_path, monkeypatch):
    """searching.find on a real database of 3,000 faces: same tolerance, same matches, same order."""
    from facegrid import crowding, databases, scoring, searching
    from facegrid import targets as targets_mod

    layout = coded_layout()
    rng = np.random.default_rng(22)
    path = tmp_path / "f.db"
    db = store.open_db(path)
    faces = people_faces(rng, 500, 6)
    store.store_results(db, [result(f"p{i}-{j}", [f]) for i, person in enumerate(faces) for j, f in enumerate(person)])
    idx = index.load(db, path, layout)
    assert len(idx) == 3000 and len(idx.segments[0].short_codes()) == 8, "3,000 rows in files of 400"
    asks = []
    candidates = index.Segment.candidates

    def counted(seg, targets, radius, k, *rest):
        asks.append(k)
        return candidates(seg, targets, radius, k, *rest)

    coll = databases.Collection([str(path)])
    params = scoring.Params()
    crowding.typical(idx, params, searching.cache_dir(coll))  # measured once and kept: not a search's reads
    monkeypatch.setattr(index.Segment, "candidates", counted)
    asked, same_answer, matched = 0, 0, 0
    for i in range(0, 500, 10):
        for mode in ("mean", "min"):
            targets = [targets_mod.Target(f"t{j}", f"target-{i}-{j}", faces[i][j], b"") for j in range(2)]
            answers = []
            for exact in (False, True):
                got = searching.find(coll, targets, params, mode, options=index.SearchOptions(exact, 16))
                answers.append((got.tolerance, [(m.image_id, m.face_index, m.distance) for m in got.matches]))
            asked += 1
            same_answer += answers[0] == answers[1]
            matched += len(answers[1][1])
    assert matched > asked, "the searches found matches (the check is not about empty answers)"
    assert same_answer == asked, f"{asked - same_answer} of {asked} searches differ from the exact scan"
    assert min(asks) == 16 and max(asks) > 16, f"the searches never asked for more neighbours: {set(asks)}"
    assert max(asks) < 400, "a search read every code of a file: the bound never settled it"


def test_a_short_code_floor_never_exceeds_the_exact_distance(tmp_path):
    """The floor (projected distance - the codes' measured error) is a lower bound on the exact distance,
    also for rows far outside the range the quantiser was trained on (their codes are clamped)."""
    layout = coded_layout()
    rng = np.random.default_rng(26)
    path = tmp_path / "f.db"
    db = store.open_db(path)
    store.store_results(db, [result(f"a{i}", [f]) for i, f in enumerate(sum(people_faces(rng, 300, 2), []))])
    trained = index.load(db, path, layout).segments[0]
    wild = [(f * 4).astype(np.float32) for f in sum(people_faces(rng, 300, 2), [])]  # outside the trained range
    store.store_results(db, [result(f"w{i}", [f]) for i, f in enumerate(wild)])
    for step in range(index.MAX_SEGMENTS):  # small updates until the tail is merged into one with codes
        store.store_results(db, [result(f"s{step}-{i}", [wild[i] * 0.9]) for i in range(80)])
    idx = index.load(db, path, layout)
    coded = [s for s in idx.segments if s.short_codes() is not None]
    assert len(coded) >= 2 and max(s.code_error for s in coded) > 2 * trained.code_error
    for q in [wild[0], wild[7] * 1.1, trained.vectors[3], rng.normal(0, 0.3, DIM).astype(np.float32)]:
        q = np.atleast_2d(np.asarray(q, dtype=np.float32))
        for seg in coded:
            pos, floors, complete = seg.candidates(q, 10.0, len(seg))
            exact = np.linalg.norm(np.asarray(seg.vectors[pos]) - q, axis=1)
            assert (floors <= exact).all(), float((floors - exact).max())
            assert len(pos) == len(seg) and complete == 10.0


def test_a_search_through_the_short_codes_racing_the_collector(tmp_path):
    layout = coded_layout()
    rng = np.random.default_rng(23)
    path = tmp_path / "f.db"
    writer = store.open_db(path, threads=True)
    first = [f for person in people_faces(rng, 300, 2) for f in person]
    store.store_results(writer, [result(f"a{i}", [f]) for i, f in enumerate(first)])
    batches = [[result(f"b{k}-{i}", faces_of(rng, 1)) for i in range(7)] for k in range(40)]
    done = threading.Event()

    def collector():
        for batch in batches:
            store.store_results(writer, batch)
        done.set()

    reader = store.open_db(path)
    assert index.load(reader, path, layout).segments[0].short_codes() is not None
    thread = threading.Thread(target=collector)
    thread.start()
    seen = []
    deadline = time.monotonic() + 120
    while not done.is_set() or not seen or seen[-1] < store.generation(reader):
        assert time.monotonic() < deadline, f"the index never caught up with the collector: {seen[-5:]}"
        idx = index.load(reader, path, layout)
        assert idx.live_count() == 600 + 7 * (idx.generation - 1), (idx.generation, idx.live_count())
        for f in first[::50]:  # stored before the race: found through the short codes in every snapshot
            assert min(near_of(idx, f, 0.3).values()) < 1e-5
        seen.append(idx.generation)
    thread.join()
    assert len(set(seen)) > 2, f"the search never ran while the collector wrote: {seen}"
    idx = index.load(reader, path, layout)
    for q in first[:20]:
        assert same(near_of(idx, q, 0.625), near_truth(path, q, 0.625))


def test_the_tail_merge_is_tiered(tmp_path):
    """Merging copies the newest segments and each older one no larger than what is merged so far."""
    rng = np.random.default_rng(24)
    path = tmp_path / "f.db"
    db = store.open_db(path)
    store.store_results(db, [result(f"a{i}", faces_of(rng, 1)) for i in range(400)])
    index.load(db, path)
    sizes = []
    for step in range(3 * index.MAX_SEGMENTS):
        store.store_results(db, [result(f"s{step}-{i}", faces_of(rng, 1)) for i in range(10)])
        idx = index.load(db, path)
        sizes.append([len(s) for s in idx.segments])
    assert all(s[0] == 400 for s in sizes), "the big first segment was never copied"
    assert max(len(s) for s in sizes) == index.MAX_SEGMENTS
    assert any(len(s) > 3 and s[1] > s[-1] for s in sizes), f"every merge took the whole tail: {sizes}"
    target = rng.normal(0, 0.1, DIM).astype(np.float32)
    assert same(indexed(idx, target), truth(path, target))


def test_a_merged_segment_moves_codes_and_equals_one_built_by_adding(tmp_path):
    """Merging segments that have short codes moves their codes (dead rows left out) instead of adding
    the rows again; the result answers as an index built from the merged rows does."""
    layout = coded_layout(300)
    rng = np.random.default_rng(25)
    path = tmp_path / "f.db"
    db = store.open_db(path)
    store.store_results(db, [result(f"a{i}", faces_of(rng, 1)) for i in range(300)])
    index.load(db, path, layout)
    for step in range(index.MAX_SEGMENTS):  # equal segments, each with its own short codes
        store.store_results(db, [result(f"s{step}-{i}", faces_of(rng, 1)) for i in range(300)])
        store.store_results(db, [result(f"a{step}", faces_of(rng, 1))])  # and a dead row in the first
        idx = index.load(db, path, layout)
    assert len(idx.segments) < index.MAX_SEGMENTS, "the merge ran"
    merged = max(idx.segments, key=len)
    assert len(merged) > 2000 and len(merged.short_codes()) > 1
    again = tmp_path / "again"
    (again / "seg").mkdir(parents=True)
    shutil.copy(index.index_dir(path) / index.TRAINED_FILE, again / index.TRAINED_FILE)
    for name in index.NAMES:
        np.save(again / "seg" / f"{name}.npy", np.asarray(getattr(merged, name)))
    index.codes.write_for(again, again / "seg", layout)
    built = index.Segment.open(again / "seg")
    assert len(codes_of(merged)) == len(merged)
    assert np.array_equal(codes_of(merged), codes_of(built)), "a moved code differs from the row's own"
    assert merged.code_error >= built.code_error  # the sources' largest error: a bound, maybe not the least
    target = rng.normal(0, 0.1, DIM).astype(np.float32)
    assert same(near_of(idx, target, 0.625), near_truth(path, target, 0.625))
    assert idx.live_count() == store.face_count(db)


def test_damaged_short_codes_make_the_index_built_again(tmp_path, caplog):
    """A codes file cut short or gone: the next search says so in the log and builds the index again."""
    layout = coded_layout()
    rng = np.random.default_rng(27)
    path = tmp_path / "f.db"
    db = store.open_db(path)
    store.store_results(db, [result(f"a{i}", [f]) for i, f in enumerate(sum(people_faces(rng, 300, 2), []))])
    idx = index.load(db, path, layout)
    q = np.asarray(idx.vectors[5])[0]
    for damage in ("cut", "gone"):
        (first,) = index.index_dir(path).glob("seg-*/codes-0.faiss")
        if damage == "cut":
            first.write_bytes(first.read_bytes()[:100])
        else:
            first.unlink()
        with caplog.at_level(logging.WARNING, logger="facegrid.index"):  # as a new process: a cache of its own
            idx = index.load(store.open_db(path), path, layout, index.SegmentCache())
        assert "unreadable" in caplog.text and "short codes" in caplog.text
        caplog.clear()
        assert same(near_of(idx, q, 0.625), near_truth(path, q, 0.625))


def test_the_collections_typical_crowd_does_not_depend_on_the_order_faces_arrived_in(tmp_path):
    """The collector stores photos in the order the filters finish them; the median d_k that every search's
    tolerance is measured against must come out the same for the same faces in another order."""
    from facegrid import crowding, scoring

    rng = np.random.default_rng(5)
    photos = [
        result(f"p{i}-{j}", [f]) for i, person in enumerate(people_faces(rng, 150, 4)) for j, f in enumerate(person)
    ]
    shuffled = [photos[i] for i in rng.permutation(len(photos))]
    found = []
    for name, order in (("a", photos), ("b", shuffled)):
        path = tmp_path / f"{name}.db"
        db = store.open_db(path)
        store.store_results(db, order)
        idx = index.load(db, path)
        chosen = crowding.sample(idx, crowding.SAMPLES)
        assert len(chosen) == crowding.SAMPLES == len(set(chosen.tolist()))
        vectors = sorted(map(bytes, np.asarray(idx.vectors[chosen])))
        found.append((vectors, crowding.typical(idx, scoring.Params())))
    assert found[0][0] == found[1][0], "another order picked other faces"
    assert found[0][1] == found[1][1] > 0
