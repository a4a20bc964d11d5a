"""Fast tests of the pure parts: no beanstalkd, no photos, a fraction of a second each.

The index's search path against face_recognition's own face_distance, box conversion back to
the original photo's pixels, retry delays, the confidence words and the backlog bound
(the last against a real beanstalkd: the queue is never mocked)."""

from __future__ import annotations

import factories
import numpy as np
import pytest

from facegrid import delivery, scoring
from facegrid.envelope import ENCODING_DIM, Face
from facegrid.filter_worker import _to_original
from facegrid.index import FaceIndex
from facegrid.settings import Beanstalkd as BeanstalkdConf


def _index(vectors: np.ndarray) -> FaceIndex:
    v = vectors.astype(np.float32)
    return FaceIndex.from_arrays(v, (v * v).sum(axis=1), np.arange(len(v), dtype=np.int64))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_index_near_matches_face_recognition(seed):
    """The path search takes (FaceIndex.near: candidates, then _rerank's exact distances) against
    face_recognition's own face_distance: the same faces within the radius, at the same distances."""
    face_recognition = pytest.importorskip("face_recognition")
    rng = np.random.default_rng(seed)
    targets = rng.normal(0, 0.1, (3, ENCODING_DIM))
    near_them = targets[rng.integers(0, 3, 200)] + rng.normal(0, 0.03, (200, ENCODING_DIM))
    near_mean = targets.mean(axis=0) + rng.normal(0, 0.03, (50, ENCODING_DIM))
    stored = np.vstack([near_them, near_mean, rng.normal(0, 0.1, (300, ENCODING_DIM))])
    idx = _index(stored)
    radius = 0.45
    want_min = np.min([face_recognition.face_distance(stored, t) for t in targets], axis=0)
    want_mean = face_recognition.face_distance(stored, targets.mean(axis=0))
    for mode, want in (("min", want_min), ("mean", want_mean)):
        got = idx.near(targets, mode, radius)
        inside = np.flatnonzero(want <= radius)
        assert 0 < len(inside) < len(stored), "a radius that separates nothing tests nothing"
        np.testing.assert_array_equal(got.positions, inside)
        np.testing.assert_allclose(got.dist, want[inside], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(got.rows, stored[inside], atol=1e-6)
    # a stored face that is one of the targets is at distance 0 (no negative rounding under the root)
    idx = _index(np.vstack([stored, targets[:1]]))
    got = idx.near(targets[:1], "min", 1e-3)
    assert list(got.positions) == [len(stored)] and got.dist[0] == pytest.approx(0.0, abs=1e-3)


def _face(box) -> Face:
    return Face(box=box, encoding=np.zeros(ENCODING_DIM, np.float32), crop=b"")


def test_boxes_of_a_reencoded_copy_go_back_to_original_pixels():
    faces = [_face((10, 60, 50, 20)), _face((0, 100, 80, 0))]  # top, right, bottom, left in the copy
    out, w, h = _to_original(faces, 100, 80, {"original_width": 400, "original_height": 320})
    assert (w, h) == (400, 320)
    assert out[0].box == (40, 240, 200, 80)
    assert out[1].box == (0, 400, 320, 0)  # edges stay on the photo's edges


def test_box_conversion_never_leaves_the_photo():
    out, w, h = _to_original([_face((0, 101, 81, 0))], 100, 80, {"original_width": 333, "original_height": 250})
    top, right, bottom, left = out[0].box
    assert 0 <= left < right <= w and 0 <= top < bottom <= h


def test_retry_delay_doubles_per_earlier_try_and_is_capped():
    conf = BeanstalkdConf(retry_delay=2, retry_delay_max=30)
    delays = [delivery.retry_delay(conf, {"releases": n, "timeouts": 0}) for n in range(6)]
    assert delays == [2, 4, 8, 16, 30, 30]
    assert delivery.retry_delay(conf, {"releases": 1, "timeouts": 2}) == 16  # a timeout counts as a try
    assert delivery.retry_delay(conf, {}) == 2  # stats unknown (job gone): the first delay


def test_confidence_words_follow_the_measured_precision():
    scores = np.linspace(0, 1.5, 61)
    words = [scoring.confidence(float(s))[0] for s in scores]
    rank = {"strong": 0, "likely": 1, "weak": 2}
    assert [rank[w] for w in words] == sorted(rank[w] for w in words)  # never better for a worse score
    for s in scores:
        word, p = scoring.confidence(float(s))
        if p is not None:
            assert word == ("strong" if p >= 0.99 else "likely" if p >= 0.9 else "weak")
    best = float(scores[0])
    assert scoring.confidence(best, face_px=scoring.STRONG_MIN_FACE_PX - 1)[0] != "strong"  # too small
    assert scoring.confidence(best, sharp=scoring.STRONG_MIN_SHARPNESS - 1)[0] != "strong"  # too blurred


def test_backlog_waits_at_the_bound_and_asks_once_per_budget(beanstalkd):
    from facegrid import settings as settings_mod
    from facegrid.backlog import Backlog
    from facegrid.beanstalk import Queue

    conf = settings_mod.load(None, settings_mod.parse_address(beanstalkd.address)).beanstalkd
    queue = Queue(conf, use="images").connect()
    try:
        backlog = Backlog(queue, "images", 3, lambda: False)

        def stats_tube_calls() -> int:
            with beanstalkd.client() as c:
                return int(c.stats()["cmd-stats-tube"])

        before = stats_tube_calls()
        for _ in range(3):
            backlog.wait()
            queue.put(b"job")
        assert stats_tube_calls() - before == 1  # one look allowed three puts
        stop = iter([False, False, True])  # three looks at a full tube, then told to stop
        backlog.should_stop = lambda: next(stop)
        before = stats_tube_calls()
        backlog.wait()  # the tube holds 3 ready jobs: it waits, looking, until told to stop
        assert stats_tube_calls() - before == 2
        assert beanstalkd.tube("images")["current-jobs-ready"] == 3
    finally:
        queue.close()


def _walk_faces(seed: int, frames: int = 60) -> list:
    """Two or three people drifting across sampled frames, leaving and coming back."""
    from facegrid.tracks import FrameFace

    rng = np.random.default_rng(seed)
    people = [rng.normal(size=ENCODING_DIM).astype(np.float32) * 0.05 for _ in range(3)]
    out = []
    for n in range(frames):
        t = float(n)
        for p, base in enumerate(people):
            if rng.random() < 0.3:  # off screen in this frame
                continue
            x = int(40 + 200 * p + 3 * n + rng.integers(-4, 5))
            box = (50, x + 80, 130, x)
            enc = base + rng.normal(size=ENCODING_DIM).astype(np.float32) * 0.01
            out.append(FrameFace(f"f{n:03d}", p, t, t + float(rng.integers(0, 2)), box, enc, float(rng.random())))
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_tracks_built_on_from_any_frame_equal_tracks_built_at_once(seed):
    """What the collector does per batch: the tracks before a frame stay, open ones are carried on."""
    from facegrid import tracks

    faces = _walk_faces(seed)
    args = (1.0, 2.0, 0.3, 0.6, 0.45)

    def members(found):
        return sorted(sorted((f.image_id, f.idx) for f in tr.faces) for tr in found)

    whole = tracks.build(faces, *args)
    assert 3 <= len(whole) < len(faces) / 2  # people leave and come back: several tracks, most faces joined
    for since in (1.0, 17.0, 30.0, 59.0):
        before = tracks.build([f for f in faces if f.t < since], *args)
        reach = since - args[0] - args[1] - 1e-6
        still = [tr for tr in before if tr.faces[-1].t_end >= reach]
        closed = [tr for tr in before if tr.faces[-1].t_end < reach]
        later = tracks.build([f for f in faces if f.t >= since], *args, active=still)
        assert members(closed + later) == members(whole), since


def _frame_results(n: int = 40, seed: int = 5) -> list:
    """Stand-in filter results of one video's frames: two people, leaving and coming back."""
    import io

    from PIL import Image

    from facegrid import envelope

    rng = np.random.default_rng(seed)
    people = [rng.normal(size=ENCODING_DIM).astype(np.float32) * 0.05 for _ in range(2)]
    out = []
    for k in range(n):
        t, faces = float(k), []
        for p, base in enumerate(people):
            if rng.random() < 0.25:
                continue
            buf = io.BytesIO()
            Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(buf, "JPEG")
            x = 20 + 150 * p + k % 30
            box = (40, x + 60 + int(rng.integers(0, 20)), 110, x)
            faces.append(Face(box, base + rng.normal(size=ENCODING_DIM).astype(np.float32) * 0.01, buf.getvalue()))
        frame = {"video_id": "ab" * 32, "t": t, "t_end": t, "index": 30 * k, "fps": 1.0, "duration": float(n)}
        out.append(
            factories.result(
                id=envelope.frame_id("ab" * 32, t),
                path="v.mp4",
                size=1000,
                width=320,
                height=180,
                faces=faces,
                frame=frame,
            )
        )
    return out


def test_tracks_stored_in_any_batches_and_order_equal_tracks_stored_at_once(tmp_path):
    """The collector builds tracks on from each batch's earliest frame: batches of one, out of
    order, and frames stored twice give the tracks of one batch holding every frame (real SQLite)."""
    import random

    from facegrid import store

    results = _frame_results()
    tracks_sql = "SELECT start_s, end_s, faces, best_image_id, best_idx FROM tracks ORDER BY start_s"
    members_sql = "SELECT image_id, idx FROM track_faces ORDER BY track, image_id, idx"

    def stored(name: str, batches: list[list]) -> tuple[list, list]:
        db = store.open_db(tmp_path / f"{name}.db")
        for batch in batches:
            store.store_results(db, batch)
        return db.execute(tracks_sql).fetchall(), [tuple(r) for r in db.execute(members_sql)]

    whole = stored("whole", [results])
    assert len(whole[0]) >= 3  # people leave and come back
    shuffled = results[:]
    random.Random(1).shuffle(shuffled)
    twice = [results[i : i + 3] for i in range(0, len(results), 3)] + [results[10:14], results[2:5]]
    for name, batches in (
        ("in-order", [[r] for r in results]),
        ("shuffled", [[r] for r in shuffled]),
        ("twice", twice),
    ):
        got = stored(name, batches)
        assert got[0] == whole[0], name
        assert sorted(got[1]) == sorted(whole[1]), name
