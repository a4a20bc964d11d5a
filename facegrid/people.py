"""search.py --people: who is in this collection.

Every stored face of a photo, and each video track's best face (one per
appearance), is clustered into persons with dlib's Chinese whispers graph
clustering over a graph that joins two faces when each would find the other
with search.py's own rule (the tolerance, tightened among look-alikes; see
facegrid/scoring.py) and they come from different photos; a face left alone
then joins the person whose profile would find it. docs/search.md has
the measured BCubed quality on lfw-dev. The output folder (written by report.write_people) gets:

  index.html         one row per person, largest first: face count, sample
                     crops, the photos the person appears in (self-contained)
  person-NNN/        that person's sample face crops, each verified to hold
                     exactly one detectable face, so the folder can be handed
                     straight back to search.py as TARGET_DIR;
                     photos.csv lists every face of the person

The graph is built from each face's nearest faces (facegrid/neighbours.py): exact
up to neighbours.EXACT_LIMIT (50,000) faces, where time grows with the square of
the face count; beyond that from faiss's inverted-file index, about n x 8,000
distances (1,000,000 faces: docs/benchmarks.md, "people_1m_s").

This module clusters; what --people writes (index.html, the person folders) is
made by facegrid/report.py (write_people).
"""

from __future__ import annotations

import dataclasses
from collections import Counter

import numpy as np

from . import scoring, store
from .envelope import ENCODING_DIM


@dataclasses.dataclass
class FaceRow:
    image_id: str
    idx: int
    path: str
    host: str
    crop: bytes
    encoding: np.ndarray
    start_s: float | None = None  # a video appearance (its track's best face): its span
    end_s: float | None = None

    @property
    def video(self) -> bool:
        return self.start_s is not None

    @property
    def where(self) -> str:
        from .video import clock

        return f"{self.path} @ {clock(self.start_s or 0)}-{clock(self.end_s or 0)}" if self.video else self.path


@dataclasses.dataclass
class Person:
    number: int
    faces: list[FaceRow]  # nearest to the person's mean first
    distances: list[float]
    title: str | None = None  # the name given in the people registry (facegrid people name)

    @property
    def name(self) -> str:
        return f"person-{self.number:03d}"

    def photos(self) -> list[FaceRow]:
        """One face per photo, in the order of self.faces."""
        seen, out = set(), []
        for f in self.faces:
            if f.image_id not in seen and not f.video:
                seen.add(f.image_id)
                out.append(f)
        return out

    def appearances(self) -> list[FaceRow]:
        """The person's video appearances (one face per track), by video and time."""
        return sorted((f for f in self.faces if f.video), key=lambda f: (f.path, f.start_s))


def load_faces(db) -> list[FaceRow]:
    """Every photo's faces and each video appearance's best face (store.people_faces)."""
    return [
        FaceRow(image_id, idx, path, host or "", crop or b"", np.frombuffer(enc, "<f4"), start_s, end_s)
        for one in getattr(db, "dbs", [db])  # a Collection of several databases, or one
        for image_id, idx, enc, crop, path, host, start_s, end_s in store.people_faces(one)
        if enc and len(enc) == ENCODING_DIM * 4
    ]


def cluster_labels(encodings: list[np.ndarray], photos: list[str], params: scoring.Params) -> list[int]:
    """A cluster number per encoding: Chinese whispers over the look-alike graph.

    A face the graph leaves alone joins the person whose profile finds it
    (_join_lone_faces). Faces of one photo are never joined; should the clustering
    still put two of them together, the one further from the person's mean starts its own.
    """
    import dlib

    n = len(encodings)
    if n <= 1:
        return [0] * n
    x = np.stack(encodings).astype(np.float32)
    photo_ids = np.unique(np.asarray(photos), return_inverse=True)[1]
    table = scoring.neighbour_table(x, params)
    edges = scoring.neighbour_graph(x, photo_ids, params, table=table)
    pairs = [(i, j, 1.0) for i, j in edges] + [(n - 1, n - 1, 1.0)]  # the last pair makes n labels
    labels = list(dlib.chinese_whispers(pairs))
    labels = _join_lone_faces(_split_same_photo(labels, x, photo_ids), x, photo_ids, table)
    return _split_same_photo(labels, x, photo_ids)


def _join_lone_faces(labels: list[int], x: np.ndarray, photo_ids: np.ndarray, t: scoring.Neighbours) -> list[int]:
    """A face the graph left alone joins the person whose profile would find it in a search.

    A person's profile is the mean of its faces, steadier than any one of them: a
    face no single face of the person reaches (each pair must lie within both faces'
    tolerance) may still lie within the tolerance a search for the person gives it.
    That is search.py's own rule: the profile's look-alike tolerance, its look-alikes
    (at least lookalike_spread from every face of the person) counted among the
    nearest faces of the person's faces, combined with the lone face's own tolerance
    (scoring.candidate_tolerance). The persons asked are those of the lone face's
    scoring.NEIGHBOURS nearest faces from other photos; the best score at most 1 wins.
    """
    arr = np.asarray(labels)
    size = Counter(labels)
    asked: dict[int, list[int]] = {}
    for i in (i for i, label in enumerate(labels) if size[label] == 1):
        ok = (t.pos[i] >= 0) & (photo_ids[np.maximum(t.pos[i], 0)] != photo_ids[i])
        for label in {labels[j] for j in t.pos[i][ok][: scoring.NEIGHBOURS]}:
            if size[label] > 1:
                asked.setdefault(label, []).append(i)
    order = np.argsort(arr, kind="stable")  # each person's faces, read once for all of them
    keys, by_label = list(asked), arr[order]
    ends = zip(np.searchsorted(by_label, keys), np.searchsorted(by_label, keys, "right"), strict=True)
    members = {label: order[a:b] for label, (a, b) in zip(keys, ends, strict=True)}

    def near_of(faces, lone):  # the faces known near the profile: the person's faces' own nearest
        return np.unique(t.pos[faces])

    joined = join_lone(x, t.tol, asked, members.__getitem__, near_of, t.params)
    for i, label in joined.items():
        labels[i] = label
    return labels


def profile_scores(x: np.ndarray, members: np.ndarray, near: np.ndarray, lone, own, p: scoring.Params) -> np.ndarray:
    """The score of each face of x[lone] in a search for a person: its distance to the person's
    profile (the mean of x[members]) over its tolerance there. That is the look-alike rule with the
    person's faces as the target photos, their look-alikes counted among x[near] (the nearest faces
    known), combined with the face's own tolerance (own) as candidate_tolerance combines them; inf
    for every face when none lies within the widest tolerance there can be."""
    profile = x[members].mean(axis=0)
    d = np.linalg.norm(x[lone] - profile, axis=1)
    if not np.any(d <= scoring.widest(p.tolerance, p)):  # no tolerance reaches that far: spare the count
        return np.full(len(d), np.inf)
    tol = p.tolerance
    if p.lookalike_count > 0:
        near_dist = np.linalg.norm(x[near] - profile, axis=1)
        k, spread = p.lookalike_count, p.lookalike_spread
        dk = scoring.kth_distinct(near_dist, x[near], x[members], k, spread, first=len(near))
        tol = scoring.lookalike_tolerance(dk, p)
    return d / scoring.candidate_tolerance(tol, np.asarray(own, dtype=np.float64), p)


def join_lone(x: np.ndarray, own: np.ndarray, asked: dict, members_of, near_of, p: scoring.Params) -> dict[int, int]:
    """Lone faces joined to persons: {row of x: person} for each face of asked (person -> rows of
    the lone faces that ask it) whose best profile_scores, over the persons it asks that hold two
    faces or more, is at most 1. members_of(person) gives the person's rows, near_of(members,
    lone) the rows its look-alikes are counted among; own: every row's own tolerance."""
    best: dict[int, tuple[float, int]] = {}
    for person, lone in asked.items():
        members = members_of(person)
        if len(members) < 2:
            continue
        near = near_of(members, lone)
        for row, score in zip(lone, profile_scores(x, members, near[near >= 0], lone, own[lone], p), strict=True):
            if score <= 1.0 and score < best.get(row, (np.inf, 0))[0]:
                best[row] = (float(score), person)
    return {row: person for row, (_, person) in best.items()}


def _split_same_photo(labels: list[int], x: np.ndarray, photo_ids: np.ndarray) -> list[int]:
    next_label = max(labels) + 1
    members: dict[int, list[int]] = {}
    for i, label in enumerate(labels):
        members.setdefault(label, []).append(i)
    for idx in members.values():
        if len({int(photo_ids[i]) for i in idx}) == len(idx):
            continue
        dist = np.linalg.norm(x[idx] - x[idx].mean(axis=0), axis=1)
        kept: set[int] = set()
        for pos in np.argsort(dist, kind="stable"):
            i = idx[pos]
            if int(photo_ids[i]) in kept:
                labels[i], next_label = next_label, next_label + 1
            else:
                kept.add(int(photo_ids[i]))
    return labels


def cluster(faces: list[FaceRow], params: scoring.Params) -> list[Person]:
    """Persons, largest first; within a person, faces nearest its mean first."""
    labels = cluster_labels([f.encoding for f in faces], [f.image_id for f in faces], params)
    groups: dict[int, list[FaceRow]] = {}
    for face, label in zip(faces, labels, strict=False):
        groups.setdefault(label, []).append(face)
    ordered = sorted(groups.values(), key=lambda g: (-len(g), g[0].path))
    people = []
    for n, group in enumerate(ordered, 1):
        mat = np.stack([f.encoding for f in group])
        dist = np.linalg.norm(mat - mat.mean(axis=0), axis=1)
        order = np.argsort(dist, kind="stable")
        people.append(Person(n, [group[i] for i in order], [float(dist[i]) for i in order]))
    return people
