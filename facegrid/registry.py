"""The people registry: persons with stable ids, brought up to date as faces are stored.

The first update clusters every face at once, exactly as search.py --people
always has (people.cluster_labels: Chinese whispers over the look-alike graph of
scoring.neighbour_graph); persons get ids 1, 2, ... largest first. Every later
update looks only at what changed since (store.registry_changes): the faces
stored since, those a re-processed photo changed, and those a user rejected.

A new face joins the graph by the same rule as a face clustered at once: it is
joined to each of its NEIGHBOURS nearest faces from other photos that lies within
both faces' own search tolerance (the look-alike rule with the face as the
target, its look-alikes counted among its LISTED nearest faces, scoring.py).
An existing face keeps the tolerance it had when it was assigned. Then the
Chinese whispers go on over the new faces only: the faces already in a person
keep it, each new face takes the person most of its edges lead to (a tie goes
to the person there is), and new faces joined only among themselves make new
persons, unless ATTACH_EDGES or more of the group's edges lead to a person there
is (many new photos of one person would otherwise outvote its few); a new face
left alone joins the person whose profile finds it, as clustering at once does
(registry_graph.join_lone). The tolerance
uses the collection's typical d_k (the crowd factor) as the clustering does: the
median of every face's at the first update, moved by each update's new faces. A
person never holds two faces of one photo, and never a face a user rejected from it.
The tolerances, edges and whispers of the new faces are registry_graph.py's.

So ids and names stay, merges, splits and rejections stay (no face already in a
person moves), and the work is the new faces' neighbour search: exact up to
EXACT_LIMIT faces, beyond that an inverted file over coarse cells that are
trained once and kept in the database (person_cells), so an update assigns only
its new faces to cells.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections import Counter

import numpy as np

from . import neighbours, people, scoring, store
from .envelope import ENCODING_DIM
from .registry_graph import ATTACH_EDGES as ATTACH_EDGES  # the graph's rules, still registry.NAME
from .registry_graph import NEIGHBOURS as NEIGHBOURS
from .registry_graph import ROUNDS as ROUNDS
from .registry_graph import Faces, label_new_faces, lookalike_distances, median, tolerance_of

log = logging.getLogger("facegrid.registry")
LISTED = scoring.LISTED  # a face's look-alikes counted among this many nearest, as clustering at once
EXACT_LIMIT = neighbours.EXACT_LIMIT  # faces; beyond, the neighbour search probes cells
NPROBE = neighbours.NPROBE  # cells probed a face, as neighbours.py
TRAIN_SAMPLE = neighbours.TRAIN_SAMPLE


@dataclasses.dataclass
class Outcome:
    """What one update did."""

    faces: int = 0  # faces looked at (new, changed or waiting)
    joined: int = 0  # of those, put into a person that existed
    created: int = 0  # persons made
    removed: int = 0  # faces that left their person (deleted or changed by a re-processed photo)
    first: bool = False  # the registry was made from scratch
    seconds: float = 0.0

    def line(self) -> str:
        if self.first:
            return f"registry made: {self.created} person(s) from {self.faces} face(s) in {self.seconds:.1f}s"
        return (
            f"registry updated: {self.faces} new face(s), {self.joined} into existing persons, "
            f"{self.created} new person(s), {self.removed} face(s) left their person, in {self.seconds:.1f}s"
        )


def update(db, params: scoring.Params) -> Outcome:
    """Bring the registry up to date with the stored faces (see the module's docstring)."""
    t0 = time.perf_counter()
    changes = store.registry_changes(db)
    out = _first(db, changes, params) if changes.since is None else _step(db, changes, params)
    out.seconds = time.perf_counter() - t0
    log.debug("%s", out.line())
    return out


def _first(db, changes: store.RegistryChanges, params: scoring.Params) -> Outcome:
    """Every face clustered at once (people.cluster_labels), persons numbered largest first."""
    rowids, photos, x = _unpack(changes.new)
    labels = people.cluster_labels(list(x), photos, params) if len(x) else []
    cells = None
    if len(x) > EXACT_LIMIT:
        centroids = _train_cells(x)
        store.set_registry_cells(db, centroids, [])
        cells = _assign_cells(centroids, x)
    tol, typical = _tolerances(x, params)
    sizes = Counter(labels)
    first_path: dict[int, int] = {}
    for i, label in enumerate(labels):
        first_path.setdefault(label, i)
    order = sorted(sizes, key=lambda label: (-sizes[label], first_path[label]))
    key = {label: -(n + 1) for n, label in enumerate(order)}
    assigned = _assignments(changes.new, rowids, [key[label] for label in labels], tol, cells)
    store.apply_registry_update(db, changes, assigned, [key[label] for label in order], typical)
    return Outcome(faces=len(x), created=len(order), first=True)


def _step(db, changes: store.RegistryChanges, params: scoring.Params) -> Outcome:
    """The new faces joined to the persons there are (see the module's docstring)."""
    out = Outcome(faces=len(changes.new), removed=changes.left)
    if not changes.new:
        store.apply_registry_update(db, changes, [], [])
        return out
    n_rowids, n_photos, n_x = _unpack(changes.new)
    m = len(n_x)
    members, uncelled = store.registry_counts(db)
    scale = members + m > EXACT_LIMIT
    b_rowids, owners, b_tol, b_cells, b_photos, b_x = _kept_members(db, changes, n_x, scale, uncelled)
    nb = len(b_x)
    all_x = np.concatenate([b_x, n_x]) if nb else n_x
    cells_new, dist, pos = _search_new(db, all_x, n_x, b_rowids, b_cells, scale)
    full = not scale and dist.shape[1] == nb + m  # the lists hold every face: nothing lies beyond
    dks = lookalike_distances(dist, pos, all_x, n_x, params, full=full)
    typical = _typical_after(db, params, dks, members)
    tol_new = tolerance_of(dks, params, typical)
    rejected = [changes.rejects.get(int(r), set()) for r in n_rowids]
    gone = set(changes.removed)
    held = {(p, i) for p, i, r in store.photo_persons(db, sorted(set(n_photos))) if r not in gone}
    faces = Faces(all_x, np.asarray(b_photos + n_photos), np.concatenate([b_tol, tol_new]), owners, rejected)
    p = dataclasses.replace(params, typical=typical) if params.crowd_power > 0 else params
    labels = label_new_faces(dist, pos, faces, n_photos, held, p)
    sizes = Counter(label for label in labels if label < 0)
    new_keys = sorted(sizes, key=lambda k: (-sizes[k], -k))
    out.joined = sum(1 for label in labels if label > 0)
    out.created = len(new_keys)
    assigned = _assignments(changes.new, n_rowids, labels, tol_new, cells_new)
    store.apply_registry_update(db, changes, assigned, new_keys, typical)
    return out


def _kept_members(db, changes: store.RegistryChanges, n_x: np.ndarray, scale: bool, uncelled: int):
    """The member faces an update's new faces are searched among, less those leaving their person:
    (rowids, persons, tolerances, cells, photos, encodings). Past EXACT_LIMIT with every face in a
    cell, only the cells the new faces probe are read."""
    centroids = store.registry_cells(db) if scale else None
    probed = None
    if centroids is not None and not uncelled:
        probed = sorted(set(_nearest_cells(centroids, n_x).ravel().tolist()))
    b_rowids, owners, b_tol, b_cells, b_photos, b_x = store.registry_members(db, probed)
    keep = ~np.isin(b_rowids, np.asarray(changes.removed, np.int64))
    b_photos = [p for p, k in zip(b_photos, keep, strict=True) if k]
    return b_rowids[keep], owners[keep], b_tol[keep], b_cells[keep], b_photos, b_x[keep]


def _search_new(db, all_x: np.ndarray, n_x: np.ndarray, b_rowids: np.ndarray, b_cells: np.ndarray, scale: bool):
    """(the new faces' cells or None, distances, positions): each new face's LISTED nearest rows of
    all_x (the members, then the new faces), exact or, past EXACT_LIMIT, probing the registry's cells."""
    k = min(LISTED, len(all_x))
    if not scale:
        dist, pos = _exact_search(all_x)(n_x, k)
        return None, dist, pos
    centroids, b_cells = _cells_for(db, all_x, b_rowids, b_cells)
    cells_new = _assign_cells(centroids, n_x)
    dist, pos = _probe(all_x, np.concatenate([b_cells, cells_new]), centroids)(n_x, k)
    return cells_new, dist, pos


def _typical_after(db, params: scoring.Params, dks: np.ndarray, members: int) -> float:
    """The collection's typical d_k after an update: kept from the updates before, moved by the new
    faces' own (dks), unless the params fix it."""
    stored = store.registry_typical(db)
    m = len(dks)
    return params.typical or (
        (stored * members + median(dks) * m) / (members + m) if stored and members else median(dks)
    )


def _assignments(rows, rowids: np.ndarray, persons, tol: np.ndarray, cells) -> list[store.Assignment]:
    """store.Assignment of each face of rows (as _unpack left them): its person (or a new person's
    key), the digest of its encoding, its tolerance and its cell (None without cells)."""
    return [
        store.Assignment(
            int(rowids[i]),
            rows[i][1],
            rows[i][2],
            int(persons[i]),
            store.encoding_digest(rows[i][3]),
            float(tol[i]),
            None if cells is None else int(cells[i]),
        )
        for i in range(len(rowids))
    ]


def _unpack(rows) -> tuple[np.ndarray, list[str], np.ndarray]:
    good = [r for r in rows if r[3] and len(r[3]) == ENCODING_DIM * 4]
    rowids = np.fromiter((r[0] for r in good), np.int64, len(good))
    x = np.frombuffer(b"".join(r[3] for r in good), "<f4").reshape(len(good), ENCODING_DIM).astype(np.float32)
    rows[:] = good  # the callers index rows and x together
    return rowids, [r[1] for r in good], x


def _exact_search(base: np.ndarray):
    return lambda queries, k: _exact(base, queries, k)


def _exact(base: np.ndarray, queries: np.ndarray, k: int, block: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Each query's k nearest rows of base, nearest first (distances, positions)."""
    sq = np.einsum("ij,ij->i", base, base)
    dist = np.empty((len(queries), k), np.float32)
    pos = np.empty((len(queries), k), np.int64)
    for start in range(0, len(queries), block):
        q = queries[start : start + block]
        d = q @ base.T
        d *= -2.0
        d += np.einsum("ij,ij->i", q, q)[:, None]
        d += sq[None, :]
        part = np.argpartition(d, k - 1, axis=1)[:, :k] if k < len(base) else np.tile(np.arange(len(base)), (len(q), 1))
        pd = np.take_along_axis(d, part, axis=1)
        order = np.argsort(pd, axis=1, kind="stable")
        pos[start : start + len(q)] = np.take_along_axis(part, order, axis=1)
        dist[start : start + len(q)] = np.sqrt(np.maximum(np.take_along_axis(pd, order, axis=1), 0))
    return dist, pos


def _train_cells(x: np.ndarray) -> np.ndarray:
    """Coarse cells for the neighbour search, as neighbours.py makes them (about 4 x sqrt(n))."""
    import faiss

    n = len(x)
    cells = max(1, min(int(4 * math.sqrt(n)), n // 39))
    sample = x if n <= TRAIN_SAMPLE else x[np.random.default_rng(0).choice(n, TRAIN_SAMPLE, replace=False)]
    km = faiss.Kmeans(ENCODING_DIM, cells, niter=10, seed=1)
    km.train(np.ascontiguousarray(sample))
    return np.asarray(km.centroids, dtype=np.float32)


def _nearest_cells(centroids: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The NPROBE cells nearest each row of x (those the inverted file's search reads)."""
    import faiss

    quantizer = faiss.IndexFlatL2(ENCODING_DIM)
    quantizer.add(centroids)
    return quantizer.search(np.ascontiguousarray(x), min(NPROBE, len(centroids)))[1]


def _assign_cells(centroids: np.ndarray, x: np.ndarray) -> np.ndarray:
    import faiss

    quantizer = faiss.IndexFlatL2(ENCODING_DIM)
    quantizer.add(centroids)
    return quantizer.search(np.ascontiguousarray(x), 1)[1][:, 0].astype(np.int64)


def _cells_for(db, all_x: np.ndarray, b_rowids: np.ndarray, b_cells: np.ndarray):
    """The registry's cells (trained now, once, if it has none) and every member face's cell."""
    centroids = store.registry_cells(db)
    if centroids is None:
        centroids = _train_cells(all_x)
        b_cells = np.full(len(b_rowids), -1, np.int64)
    missing = np.flatnonzero(b_cells < 0)
    if len(missing):  # faces assigned before the registry had cells: once
        b_cells = b_cells.copy()
        b_cells[missing] = _assign_cells(centroids, all_x[missing])
        store.set_registry_cells(db, centroids, [(int(b_rowids[i]), int(b_cells[i])) for i in missing])
    return centroids, b_cells


def prepare_cells(db) -> bool:
    """Make the registry's coarse cells now if it is past EXACT_LIMIT faces and has none (otherwise the
    next update makes them): once in a registry's life. Returns whether it has cells."""
    rowids, _owners, _tol, cells, _photos, x = store.registry_members(db)
    if len(x) <= EXACT_LIMIT:
        return store.registry_cells(db) is not None
    _cells_for(db, x, rowids, cells)
    return True


def _probe(all_x, cells, centroids):
    """A search of each query's k nearest rows of all_x in its NPROBE nearest cells (an inverted file
    over the registry's cells, every row in the cell it was given)."""
    import faiss
    from faiss.contrib.ivf_tools import add_preassigned

    quantizer = faiss.IndexFlatL2(ENCODING_DIM)
    quantizer.add(centroids)
    index = faiss.IndexIVFFlat(quantizer, ENCODING_DIM, len(centroids))
    index.is_trained = True
    add_preassigned(index, np.ascontiguousarray(all_x), np.ascontiguousarray(cells))
    index.nprobe = min(NPROBE, len(centroids))

    def search(queries, k) -> tuple[np.ndarray, np.ndarray]:
        d2, pos = index.search(np.ascontiguousarray(queries), k)
        dist = np.sqrt(np.maximum(d2, 0)).astype(np.float32)
        dist[pos < 0] = np.inf
        return dist, pos.astype(np.int64)

    return search


def _tolerances(x: np.ndarray, params: scoring.Params) -> tuple[np.ndarray, float]:
    """Each face's own search tolerance among all of x (the first update), and the collection's typical
    d_k: the median of every face's, as scoring.neighbour_graph takes it."""
    if not len(x):
        return np.zeros(0, np.float32), 0.0
    dist, pos = neighbours.nearest(x, min(LISTED, len(x)))
    dks = lookalike_distances(dist, pos, x, x, params, full=dist.shape[1] == len(x))
    typical = params.typical or median(dks)
    return tolerance_of(dks, params, typical), typical


def people_of(db) -> list[people.Person]:
    """The registry's persons as --people writes them: number = the person's id, title = its name;
    most faces first, within a person the faces nearest its mean first."""
    where = store.registry_map(db)
    named = {p["id"]: p["name"] for p in store.persons(db)}
    groups: dict[int, list[people.FaceRow]] = {}
    for face in people.load_faces(db):
        pid = where.get((face.image_id, face.idx))
        if pid is not None:
            groups.setdefault(pid, []).append(face)
    out = []
    for pid, group in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        mat = np.stack([f.encoding for f in group])
        dist = np.linalg.norm(mat - mat.mean(axis=0), axis=1)
        order = np.argsort(dist, kind="stable")
        out.append(people.Person(pid, [group[i] for i in order], [float(dist[i]) for i in order], named.get(pid)))
    return out


def open_registry(coll):
    """The one database of a Collection opened for writing, so --people keeps its persons; None (with
    a warning) when this user cannot write it: the faces are then clustered without a registry."""
    import os
    from pathlib import Path

    path = Path(coll.paths[0])
    if not (os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)):
        log.warning("%s is read-only: persons clustered now, not kept in its people registry", path)
        return None
    return store.open_db(path, create=False)


PERSON_TARGETS = 2  # faces of a person a search starts from, those nearest its mean (evaluate.py --person-targets)


def person_of(coll, name_or_id: str) -> dict:
    """The person a user names, looked for in every database of the collection (store.find_person):
    in exactly one of them, else a UsageError (exit 2)."""
    from .errors import UsageError

    found, errors = [], []
    for k, db in enumerate(coll.dbs):
        try:
            found.append(dict(store.find_person(db, name_or_id), db=k))
        except UsageError as exc:
            errors.append(exc)
    if len(found) == 1:
        return found[0]
    if not found:
        raise errors[0]
    raise UsageError(f"person {store.printable_name(name_or_id)!r} is in {len(found)} of the databases; pass one --db")


def person_targets(coll, name_or_id: str):
    """(the person, the faces used, search targets): the PERSON_TARGETS faces of the person nearest its mean, each
    a targets.Target keyed by its photo's id (so the person's own photos used are not returned, as a
    target folder's photos are not)."""
    from .errors import UsageError
    from .targets import Target

    person = person_of(coll, name_or_id)
    db = coll.dbs[person["db"]]
    faces, mat = store.person_encodings(db, person["id"])
    if not faces:
        raise UsageError(f"person {person['id']} has no stored faces left; `facegrid people update` first")
    order = np.argsort(np.linalg.norm(mat - mat.mean(axis=0), axis=1), kind="stable")[:PERSON_TARGETS]
    targets = [
        Target(
            faces[i]["path"],
            faces[i]["image_id"],
            mat[i],
            store.face_crop(db, faces[i]["image_id"], faces[i]["idx"]) or b"",
        )
        for i in order
    ]
    return person, [faces[i] for i in order], targets
