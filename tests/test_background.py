"""The model crowd (facegrid/background.py): counted by the look-alike rule, never returned."""

from __future__ import annotations

import numpy as np

from facegrid import background, scoring


def test_the_crowd_is_the_same_in_every_call_and_read_only():
    a, b = background.faces(300), background.faces(300)
    assert a.shape == (300, 128) and a.dtype == np.float32
    assert np.array_equal(a, b)
    assert not a.flags.writeable
    assert len(background.fill(1000, 1500)) == 500
    assert len(background.fill(2000, 1500)) == 0


def test_the_crowd_looks_like_faces_of_different_people():
    """Pairs of synthetic faces sit as far apart as two different people's faces do (about 0.6-0.9)."""
    x = background.faces(400).astype(np.float64)
    d = np.linalg.norm(x[:200] - x[200:], axis=1)
    assert 0.6 < np.median(d) < 0.95, np.median(d)
    assert np.percentile(d, 1) > 0.4


def test_a_small_collection_tightens_where_the_model_is_crowded():
    """In a collection of a few faces the plain tolerance applies without the model; with it, a profile in
    the middle of the model's crowd gets a tighter tolerance, and one far outside it keeps the plain one."""
    crowd = background.faces(1500)
    stored = background.faces(10)  # a tiny collection: fewer faces than the rule counts
    p = scoring.Params()
    inside = crowd.mean(axis=0, keepdims=True)
    far = inside + 3.0
    for target, tightened in ((inside, True), (far, False)):
        alone = scoring.search_tolerance(np.linalg.norm(stored - target, axis=1), stored, target, p)
        both = np.concatenate([stored, background.fill(len(stored), p.background)])
        counted = scoring.search_tolerance(np.linalg.norm(both - target, axis=1), both, target, p)
        assert alone == p.tolerance
        assert (counted < p.tolerance) == tightened, (counted, tightened)
