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
    p, arr = t.params, np.asarray(labels)
    size = Counter(labels)
    asked: dict[int, list[int]] = {}
    for i in (i for i, label in enumerate(labels) if size[label] == 1):
        ok = (t.pos[i] >= 0) & (photo_ids[np.maximum(t.pos[i], 0)] != photo_ids[i])
        for label in {labels[j] for j in t.pos[i][ok][: scoring.NEIGHBOURS]} - {labels[i]}:
            if size[label] > 1:
                asked.setdefault(label, []).append(i)
    best: dict[int, tuple[float, int]] = {}
    order = np.argsort(arr, kind="stable")  # each person's faces, read once for all of them
    starts = np.searchsorted(arr[order], list(asked), side="left")
    ends = np.searchsorted(arr[order], list(asked), side="right")
    for (label, lone), a, b in zip(asked.items(), starts, ends, strict=True):
        faces = order[a:b]
        near = np.unique(t.pos[faces])
        scores = scoring.profile_scores(x, faces, near[near >= 0], lone, t.tol[lone], p)
        for i, score in zip(lone, scores, strict=True):
            if score <= 1.0 and score < best.get(i, (np.inf, 0))[0]:
                best[i] = (float(score), label)
    for i, (_, label) in best.items():
        labels[i] = label
    return labels


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
