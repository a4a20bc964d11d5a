"""The look-alike graph of a registry update's new faces, and the persons it gives them.

registry.py finds each new face's nearest faces (the members' and the other new ones); here
those lists become the face's search tolerance (the look-alike rule of scoring.py with the
collection's typical d_k), its edges (the joining rule of scoring.neighbour_graph), and its
person: Chinese whispers over the new faces with every member's person held fixed, groups of
new faces attached to a person there is, and one face of a photo a person.
"""

from __future__ import annotations

import dataclasses
from collections import Counter

import numpy as np

from . import people, scoring

NEIGHBOURS = scoring.NEIGHBOURS  # a face's edges: as scoring.neighbour_graph's
ROUNDS = 30  # Chinese whispers rounds over the new faces at most (they stop when no label changes)
ATTACH_EDGES = 2  # edges from a group of new faces to a person there is that make the group join it


@dataclasses.dataclass
class Faces:
    """An update's faces: the members' (positions 0..len(owners)-1), then the new ones."""

    x: np.ndarray  # every encoding
    photos: np.ndarray  # every face's photo
    tol: np.ndarray  # every face's own tolerance
    owners: np.ndarray  # each member's person
    rejected: list[set]  # per new face, the persons a user rejected it from


def label_new_faces(dist, pos, faces: Faces, n_photos, held: set, p: scoring.Params) -> list[int]:
    """A person (> 0) or a new person's key (< 0) per new face, from its nearest faces (dist, pos:
    positions among the members, then the new faces) and every face's tolerance: the Chinese
    whispers, then the groups attached, then the faces left alone joined to the person whose
    profile finds them (p: the rule with the collection's typical d_k), then one face of a photo a
    person (held: (person, photo) already in a person)."""
    owners, rejected = faces.owners, faces.rejected
    nb = len(owners)
    queries = np.arange(nb, nb + len(n_photos))
    labels, edges = whispers(dist, pos, faces.photos, queries, faces.tol, owners, rejected)
    labels = attach_groups(labels, edges, owners, rejected)
    labels = join_lone(labels, pos, faces, p)
    return one_face_a_photo(labels, n_photos, held, dist, pos)


def join_lone(labels: list[int], pos, faces: Faces, p: scoring.Params) -> list[int]:
    """A new face left alone (a new person of its own) joins the person there is, of two faces or
    more, whose profile would find it in a search: the rule of clustering at once
    (people._join_lone_faces), the profile's look-alikes counted among the person's faces and the
    nearest faces of the lone faces that ask it."""
    nb, x = len(faces.owners), faces.x
    size = Counter(labels)
    asked: dict[int, list[int]] = {}
    for i, label in enumerate(labels):
        if label > 0 or size[label] > 1:
            continue
        ok = (pos[i] >= 0) & (pos[i] < nb) & (faces.photos[np.maximum(pos[i], 0)] != faces.photos[nb + i])
        for person in {int(faces.owners[j]) for j in pos[i][ok][:NEIGHBOURS]} - faces.rejected[i]:
            asked.setdefault(person, []).append(nb + i)  # rows of x, as the members'
    members_of: dict[int, list[int]] = {person: [] for person in asked}
    for j in np.flatnonzero(np.isin(faces.owners, list(asked))):
        members_of[int(faces.owners[j])].append(int(j))

    def near_of(members, lone):  # the faces known near the profile: its own and the lone faces' nearest
        return np.unique(np.concatenate([pos[np.asarray(lone) - nb].ravel(), members]))

    joined = people.join_lone(x, faces.tol, asked, lambda person: np.asarray(members_of[person], np.int64), near_of, p)
    return [joined.get(nb + i, label) for i, label in enumerate(labels)]


def median(dks: np.ndarray) -> float:
    """The median d_k (the collection's typical d_k), 0.0 when there is none or it is not finite."""
    typical = float(np.median(dks)) if len(dks) else 0.0
    return typical if np.isfinite(typical) else 0.0


def tolerance_of(dks: np.ndarray, params: scoring.Params, typical: float) -> np.ndarray:
    """scoring.lookalike_tolerance of each d_k, with the collection's typical d_k (the crowd factor)."""
    p = dataclasses.replace(params, typical=typical) if params.crowd_power > 0 else params
    return np.array([scoring.lookalike_tolerance(float(dk), p) for dk in dks], dtype=np.float32)


def lookalike_distances(dist, pos, all_x, queries, params: scoring.Params, full: bool) -> np.ndarray:
    """d_k of each query, its k-th distinct look-alike among its listed nearest faces (the same steps
    as scoring.neighbour_graph); inf where there are too few."""
    dks = np.full(len(queries), np.inf)
    for i in range(len(queries)):
        ok = pos[i] >= 0
        d, j = dist[i][ok], pos[i][ok]
        if params.lookalike_count > 0:
            dks[i] = scoring.kth_distinct(
                d, all_x[j], queries[i], params.lookalike_count, params.lookalike_spread, first=len(d)
            )
            if dks[i] == float("inf") and not full:  # not within the list: its end is a lower bound
                dks[i] = float(d[-1])
    return dks


def whispers(dist, pos, photos, queries, tol_all, owners, rejected) -> tuple[list[int], list[list[int]]]:
    """A person (> 0) or a new person's key (< 0) per new face: Chinese whispers over the new faces
    with every existing face's person held fixed; and each new face's edges (positions in all_x)."""
    nb, m = len(owners), len(queries)
    edges: list[list[int]] = [[] for _ in range(m)]  # new face -> positions in all_x it is joined to
    for i, q in enumerate(queries):
        ok = (pos[i] >= 0) & (photos[np.maximum(pos[i], 0)] != photos[q])
        for j, d in zip(pos[i][ok][:NEIGHBOURS], dist[i][ok][:NEIGHBOURS], strict=False):
            if d <= tol_all[q] and d <= tol_all[j]:
                edges[i].append(int(j))
    for i in range(m):  # the graph is undirected: an edge between two new faces goes both ways
        for j in edges[i]:
            if j >= nb and nb + i not in edges[j - nb]:
                edges[j - nb].append(nb + i)
    labels = [-(i + 1) for i in range(m)]

    def label_of(j: int) -> int:
        return int(owners[j]) if j < nb else labels[j - nb]

    rng = np.random.default_rng(0)
    for _ in range(ROUNDS):
        moved = 0
        for i in rng.permutation(m):
            votes = Counter(label_of(j) for j in edges[i])
            for person in rejected[i]:
                votes.pop(person, None)
            if not votes:
                continue
            top = max(votes.values())
            tied = [v for v, c in votes.items() if c == top]
            # a tie keeps the face's label; else it goes to a person there is (the oldest), else a new one
            best = labels[i] if labels[i] in tied else min(tied, key=lambda v: (v < 0, abs(v)))
            if best != labels[i]:
                labels[i], moved = best, moved + 1
        if not moved:
            break
    return labels, edges


def attach_groups(labels: list[int], edges: list[list[int]], owners, rejected) -> list[int]:
    """A group of new faces that made a new person among themselves (many new photos of one person
    outvote the few there were) joins the person there is that ATTACH_EDGES or more of its edges lead
    to, the most of them; clustering at once would have made them one person too."""
    nb = len(owners)
    votes: dict[int, Counter] = {}
    for i, label in enumerate(labels):
        if label < 0:
            for j in edges[i]:
                if j < nb and int(owners[j]) not in rejected[i]:
                    votes.setdefault(label, Counter())[int(owners[j])] += 1
    to = {}
    for label, count in votes.items():
        person, n = count.most_common(1)[0]
        if n >= ATTACH_EDGES:
            to[label] = person
    return [
        to.get(label, label) if not (label in to and to[label] in rejected[i]) else label
        for i, label in enumerate(labels)
    ]


def one_face_a_photo(labels, n_photos, held: set, dist, pos) -> list[int]:
    """A person holds one face a photo: a new face whose photo has a face in its person already
    (held: (person, photo)) or a nearer new one starts a person of its own."""
    nearest = np.where(pos[:, 1:2] >= 0, dist[:, 1:2], np.inf)[:, 0] if pos.shape[1] > 1 else np.zeros(len(labels))
    fresh = min([*labels, 0]) - 1
    for i in np.argsort(nearest, kind="stable"):  # the face nearest its neighbours keeps its place
        key = (labels[i], n_photos[i])
        if key in held:
            labels[i], fresh = fresh, fresh - 1
        else:
            held.add(key)
    return labels
