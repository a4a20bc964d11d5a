"""The search's scoring rules on fixed encodings: fast, no server, no models."""

from __future__ import annotations

import numpy as np
import pytest

from facegrid import people, scoring
from facegrid.index import FaceIndex

DIM = 128


def unit(i: int) -> np.ndarray:
    v = np.zeros(DIM, dtype=np.float32)
    v[i] = 1.0
    return v


def dists(vectors: np.ndarray, target: np.ndarray) -> np.ndarray:
    return np.linalg.norm(vectors - target, axis=1).astype(np.float32)


def crowd(target: np.ndarray, own: int, strangers: list[float], rng) -> np.ndarray:
    """`own` faces within 0.05 of the target, then one stranger at each distance, on its own axis.

    Strangers on different axes at distances r_a, r_b are sqrt(r_a^2 + r_b^2) apart:
    more than the 0.45 spread for the distances used here, so each counts once. A
    face within the spread of a target photo is taken for the person's own photo
    and never counts, so strangers here are at least 0.46 away.
    """
    rows = [target + rng.normal(0, 0.05 / np.sqrt(DIM), DIM).astype(np.float32) for _ in range(own)]
    rows += [target + r * unit(10 + i) for i, r in enumerate(strangers)]
    return np.stack(rows).astype(np.float32)


def test_kth_distinct_ignores_the_persons_own_photos():
    rng = np.random.default_rng(1)
    target = unit(0)
    strangers = [0.30, 0.46, 0.50, 0.55, 0.60, 0.65]  # 0.30: within the spread, taken for the person
    for own in (0, 3, 2000):  # 2000 own photos also needs the search to widen past its first 512
        vectors = crowd(target, own, strangers, rng)
        d = dists(vectors, target)
        assert scoring.kth_distinct(d, vectors, target[None], 3, 0.45) == pytest.approx(0.55, abs=1e-5)


def test_kth_distinct_counts_one_strangers_repeated_photos_once():
    rng = np.random.default_rng(2)
    target = unit(0)
    base = crowd(target, 0, [0.50, 0.55, 0.60, 0.65], rng)
    repeats = np.stack([base[0] + rng.normal(0, 0.02 / np.sqrt(DIM), DIM) for _ in range(20)]).astype(np.float32)
    vectors = np.concatenate([base, repeats])
    d = dists(vectors, target)
    # the 20 near-copies of the first stranger sit within the spread of it: the 2nd distinct is 0.55
    assert scoring.kth_distinct(d, vectors, target[None], 2, 0.45) == pytest.approx(0.55, abs=1e-5)


def test_kth_distinct_is_infinite_with_too_few_lookalikes():
    rng = np.random.default_rng(3)
    target = unit(0)
    vectors = crowd(target, 5, [0.3, 0.5, 0.6], rng)
    assert scoring.kth_distinct(dists(vectors, target), vectors, target[None], 3, 0.45) == float("inf")
    assert scoring.kth_distinct(
        np.zeros(0, np.float32), np.zeros((0, DIM), np.float32), target[None], 3, 0.45
    ) == float("inf")


def test_search_tolerance_tightens_only_in_a_crowd():
    rng = np.random.default_rng(4)
    target = unit(0)
    p = scoring.Params(tolerance=0.5, lookalike_count=3, lookalike_spread=0.45, lookalike_ratio=0.8)
    sparse = crowd(target, 4, [0.7, 0.75, 0.8], rng)
    assert scoring.search_tolerance(dists(sparse, target), sparse, target[None], p) == pytest.approx(0.5)
    crowded = crowd(target, 4, [0.48, 0.5, 0.52, 0.54], rng)
    assert scoring.search_tolerance(dists(crowded, target), crowded, target[None], p) == pytest.approx(0.8 * 0.52)
    off = scoring.Params(tolerance=0.5, lookalike_count=0)
    assert scoring.search_tolerance(dists(crowded, target), crowded, target[None], off) == 0.5


def test_confidence_follows_the_measured_precision():
    scores = np.linspace(0.0, 1.3, 131)
    precision = [scoring.precision_at(float(s)) for s in scores]
    assert all(a >= b for a, b in zip(precision, precision[1:], strict=False)), "precision must not rise with the score"
    for s in scores:
        word, p = scoring.confidence(float(s))
        assert word == ("strong" if p >= 0.99 else "likely" if p >= 0.9 else "weak")
    assert scoring.confidence(0.3)[0] == "strong"
    assert scoring.confidence(1.0)[0] == "weak"
    # tiny or blurred faces are never strong, whatever their score
    assert scoring.confidence(0.3, face_px=scoring.STRONG_MIN_FACE_PX - 1)[0] == "likely"
    assert scoring.confidence(0.3, face_px=80, sharp=scoring.STRONG_MIN_SHARPNESS / 2)[0] == "likely"
    assert scoring.confidence(0.3, face_px=80, sharp=500.0)[0] == "strong"


def test_groups_split_two_people_and_keep_a_chain_together():
    a, b = unit(0), unit(1)  # sqrt(2) apart
    assert scoring.groups(np.stack([a, a + 0.01, b]), 0.65) == [[0, 1], [2]]
    chain = np.stack([a + 0.3 * i * unit(5) for i in range(5)])  # steps of 0.3, ends 1.2 apart
    assert scoring.groups(chain, 0.65) == [[0, 1, 2, 3, 4]]


def test_neighbour_graph_never_joins_two_faces_of_one_photo():
    rng = np.random.default_rng(5)
    a = unit(0)
    faces = np.stack([a, a + 0.1 * unit(3), a + 0.1 * unit(4), unit(1)]).astype(np.float32)
    photos = np.array([0, 0, 1, 2])  # faces 0 and 1 share a photo
    edges = scoring.neighbour_graph(faces, photos, scoring.Params(lookalike_count=0))
    assert (0, 1) not in edges
    assert (0, 2) in edges and (1, 2) in edges
    assert all(3 not in e for e in edges)
    del rng


def test_split_same_photo_keeps_the_face_nearest_the_mean():
    x = np.stack([unit(0), unit(0) + 0.05 * unit(1), unit(0) + 0.3 * unit(2)]).astype(np.float32)
    labels = people._split_same_photo([7, 7, 7], x, np.array([0, 1, 1]))
    assert labels[0] == labels[1] == 7 and labels[2] != 7


def test_index_near_equals_face_recognitions_distances():
    """Every face, by the path search takes (near with a radius past every face), at
    face_recognition's distance in float64."""
    fr = pytest.importorskip("face_recognition")
    rng = np.random.default_rng(6)
    vectors = rng.normal(0, 0.1, (300, DIM)).astype(np.float32)
    idx = FaceIndex.from_arrays(vectors, np.einsum("ij,ij->i", vectors, vectors), np.arange(300))
    targets = rng.normal(0, 0.1, (2, DIM)).astype(np.float32)
    want_mean = fr.face_distance(vectors.astype(np.float64), targets.mean(axis=0).astype(np.float64))
    want_min = np.min([fr.face_distance(vectors.astype(np.float64), t.astype(np.float64)) for t in targets], axis=0)
    for mode, want in (("mean", want_mean), ("min", want_min)):
        got = idx.near(targets, mode, 10.0)
        assert list(got.positions) == list(range(300))
        assert np.allclose(got.dist, want, atol=1e-5)


def test_approximate_neighbours_give_the_exact_graph_on_separate_people():
    pytest.importorskip("faiss")
    rng = np.random.default_rng(7)
    centres = rng.normal(0, 0.3, (60, DIM)).astype(np.float32)  # 60 people, far apart
    faces = np.concatenate([c + rng.normal(0, 0.01, (8, DIM)).astype(np.float32) for c in centres])
    photos = np.arange(len(faces))
    p = scoring.Params()
    exact = scoring.neighbour_graph(faces, photos, p, neighbours=10)
    approx = scoring.neighbour_graph(faces, photos, p, neighbours=10, exact_limit=0)
    assert exact and approx == exact
    person = np.repeat(np.arange(60), 8)
    assert all(person[i] == person[j] for i, j in exact)


def test_candidate_tolerance_combines_the_search_and_the_face():
    p = scoring.Params(tolerance=0.5, candidate_power=0.5, candidate_scale=1.0)
    assert scoring.candidate_tolerance(0.4, 0.4, p) == pytest.approx(0.4)
    assert scoring.candidate_tolerance(0.4, 0.5, p) == pytest.approx((0.4 * 0.5) ** 0.5)  # few look-alikes: wider
    assert scoring.candidate_tolerance(0.4, 0.1, p) == pytest.approx(scoring.CANDIDATE_FLOOR * 0.4)  # never below
    assert scoring.widest(0.4, p) == pytest.approx((0.4 * 0.5) ** 0.5)
    dist = np.array([0.3, 0.37, 0.44, 0.46], np.float32)  # below the floor, in the band, beyond the widest
    assert list(scoring.needs_own(dist, 0.4, p)) == [False, True, True, False]
    for off in (scoring.Params(tolerance=0.5, candidate_power=0.0), scoring.Params(tolerance=0.5, lookalike_count=0)):
        assert scoring.candidate_tolerance(0.4, 0.1, off) == 0.4 and scoring.widest(0.4, off) == 0.4
        assert not scoring.needs_own(dist, 0.4, off).any()


def test_a_stranger_from_a_crowd_needs_to_come_closer_than_a_face_with_few_lookalikes():
    """Two faces at the same distance from the profile: the one whose own neighbourhood is crowded
    (three distinct strangers about 0.48 from it) is no match; the other, alone, is."""
    from facegrid import searching

    target = np.zeros(DIM, np.float32)
    crowded = target + 0.49 * unit(1)
    alone = target + 0.49 * unit(2)
    strangers = [crowded + 0.48 * unit(10 + i) for i in range(4)]
    vectors = np.stack([crowded, alone, *strangers]).astype(np.float32)
    idx = FaceIndex.from_arrays(vectors, np.einsum("ij,ij->i", vectors, vectors), np.arange(len(vectors)))
    common = dict(
        tolerance=0.5, lookalike_count=3, lookalike_spread=0.45, lookalike_ratio=0.8, crowd_power=0.0, expand_count=0
    )
    for power, matched in ((0.0, {0, 1}), (0.5, {1})):
        p = scoring.Params(**common, background=0, candidate_power=power, candidate_scale=1.0)
        near, tol, _ = searching.settle(idx, target[None], p, "mean")
        assert tol == pytest.approx(0.5)  # the profile itself has no crowd
        score = near.dist / searching.face_tolerances(idx, near, tol, p)
        assert {int(i) for i in near.positions[score <= 1.0]} == matched


def test_a_face_no_single_face_reaches_joins_the_person_whose_profile_finds_it():
    """Four photos of one person around c, pairwise 0.42 apart, all joined; a fifth 0.45 from c
    but 0.54 from each of them has no edge, yet a search for the person (its mean, tolerance
    0.5) finds it, so it joins. A stranger 0.55 from c stays alone."""
    c = 0.3 * unit(0)
    person = [c + 0.3 * unit(k) for k in range(1, 5)]
    faces = np.stack([*person, c + 0.45 * unit(5), c + 0.55 * unit(6)]).astype(np.float32)
    photos = [f"p{i}" for i in range(len(faces))]
    p = scoring.Params(lookalike_count=0)
    assert all(4 not in e for e in scoring.neighbour_graph(faces, np.arange(len(faces)), p))
    labels = people.cluster_labels(list(faces), photos, p)
    assert len(set(labels[:4])) == 1
    assert labels[4] == labels[0]
    assert labels[5] != labels[0]


def test_the_lone_face_never_joins_a_person_holding_a_face_of_its_photo():
    c = 0.3 * unit(0)
    person = [c + 0.3 * unit(k) for k in range(1, 5)]
    faces = np.stack([*person, c + 0.45 * unit(5)]).astype(np.float32)
    photos = ["p0", "p1", "p2", "p3", "p0"]  # the lone face shares photo p0 with a face of the person
    labels = people.cluster_labels(list(faces), photos, scoring.Params(lookalike_count=0))
    assert labels[4] != labels[0]


def test_the_search_runs_again_while_its_surest_matches_grow():
    """Photos of one person along a line, each step a little further from the target photo:
    the first pass finds A (0.45), the second (from the target and A) finds B, and only a third
    (from the target, A and B) reaches C, 0.625 from the second pass's profile."""
    from facegrid import searching

    target = np.zeros(DIM, np.float32)
    faces = np.stack([0.45 * unit(0), 0.68 * unit(0), 0.85 * unit(0), 0.9 * unit(1)]).astype(np.float32)
    idx = FaceIndex.from_arrays(faces, np.einsum("ij,ij->i", faces, faces), np.arange(len(faces)))
    found = {}
    for rounds in (1, 2):
        p = scoring.Params(lookalike_count=0, background=0, candidate_power=0.0, expand_rounds=rounds)
        near, tol, wider = searching.settle(idx, target[None], p, "mean")
        found[rounds] = {int(i) for i in near.positions[near.dist <= tol]}
    assert found == {1: {0, 1}, 2: {0, 1, 2}}
