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
is (many new photos of one person would otherwise outvote its few). The tolerance
uses the collection's typical d_k (the crowd factor) as the clustering does: the
median of every face's at the first update, moved by each update's new faces. A
person never holds two faces of one photo, and never a face a user rejected from it.

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

log = logging.getLogger("facegrid.registry")
NEIGHBOURS = 30  # as scoring.neighbour_graph's `neighbours` (tests/test_registry.py checks they agree)
LISTED = 256  # as scoring.neighbour_graph's `listed`
EXACT_LIMIT = neighbours.EXACT_LIMIT  # faces; beyond, the neighbour search probes cells
NPROBE = neighbours.NPROBE  # cells probed a face, as neighbours.py
TRAIN_SAMPLE = neighbours.TRAIN_SAMPLE
ROUNDS = 30  # Chinese whispers rounds over the new faces at most (they stop when no label changes)


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
    assigned = [
        store.Assignment(
            int(rowids[i]),
            changes.new[i][1],
            changes.new[i][2],
            key[labels[i]],
            store.encoding_digest(changes.new[i][3]),
            float(tol[i]),
            None if cells is None else int(cells[i]),
        )
        for i in range(len(x))
    ]
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
    centroids = store.registry_cells(db) if scale else None
    probed = None  # past EXACT_LIMIT with every face in a cell: only the cells the new faces probe are read
    if centroids is not None and not uncelled:
        probed = sorted(set(_nearest_cells(centroids, n_x).ravel().tolist()))
    b_rowids, owners, b_tol, b_cells, b_photos, b_x = store.registry_members(db, probed)
    keep = ~np.isin(b_rowids, np.asarray(changes.removed, np.int64))
    b_rowids, owners, b_tol, b_cells, b_x = b_rowids[keep], owners[keep], b_tol[keep], b_cells[keep], b_x[keep]
    b_photos = [p for p, k in zip(b_photos, keep, strict=True) if k]
    nb = len(b_x)
    all_x = np.concatenate([b_x, n_x]) if nb else n_x
    photos = np.asarray(b_photos + n_photos)
    queries = np.arange(nb, nb + m)
    cells_new = None
    k = min(LISTED, nb + m)
    if scale:
        centroids, b_cells = _cells_for(db, all_x, b_rowids, b_cells)
        cells_new = _assign_cells(centroids, n_x)
        search = _probe(all_x, np.concatenate([b_cells, cells_new]), centroids)
    else:
        search = _exact_search(all_x)
    dist, pos = search(n_x, k)
    full = not scale and dist.shape[1] == nb + m  # the lists hold every face: nothing lies beyond
    dks = _lookalike_distances(dist, pos, all_x, n_x, params, full=full)
    # the collection's typical d_k: kept from the updates before, moved by the new faces' own
    stored = store.registry_typical(db)
    typical = params.typical or (
        (stored * members + _median(dks) * m) / (members + m) if stored and members else _median(dks)
    )
    tol_new = _tolerance_of(dks, params, typical)
    tol_all = np.concatenate([b_tol, tol_new])
    rejected = [changes.rejects.get(int(r), set()) for r in n_rowids]
    labels, edges = _whispers(dist, pos, photos, queries, tol_all, owners, rejected)
    labels = _attach_groups(labels, edges, owners, rejected)
    gone = set(changes.removed)
    held = {(p, i) for p, i, r in store.photo_persons(db, sorted(set(n_photos))) if r not in gone}
    labels = _one_face_a_photo(labels, n_photos, held, dist, pos)
    sizes = Counter(label for label in labels if label < 0)
    new_keys = sorted(sizes, key=lambda k: (-sizes[k], -k))
    out.joined = sum(1 for label in labels if label > 0)
    out.created = len(new_keys)
    assigned = [
        store.Assignment(
            int(n_rowids[i]),
            changes.new[i][1],
            changes.new[i][2],
            int(labels[i]),
            store.encoding_digest(changes.new[i][3]),
            float(tol_new[i]),
            None if cells_new is None else int(cells_new[i]),
        )
        for i in range(m)
    ]
    store.apply_registry_update(db, changes, assigned, new_keys, typical)
    return out


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
    dks = _lookalike_distances(dist, pos, x, x, params, full=dist.shape[1] == len(x))
    typical = params.typical or _median(dks)
    return _tolerance_of(dks, params, typical), typical


def _median(dks: np.ndarray) -> float:
    typical = float(np.median(dks)) if len(dks) else 0.0
    return typical if np.isfinite(typical) else 0.0


def _tolerance_of(dks: np.ndarray, params: scoring.Params, typical: float) -> np.ndarray:
    """scoring.lookalike_tolerance of each d_k, with the collection's typical d_k (the crowd factor)."""
    p = dataclasses.replace(params, typical=typical) if params.crowd_power > 0 else params
    return np.array([scoring.lookalike_tolerance(float(dk), p) for dk in dks], dtype=np.float32)


def _lookalike_distances(dist, pos, all_x, queries, params: scoring.Params, full: bool) -> np.ndarray:
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


def _whispers(dist, pos, photos, queries, tol_all, owners, rejected) -> tuple[list[int], list[list[int]]]:
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


ATTACH_EDGES = 2  # edges from a group of new faces to a person there is that make the group join it


def _attach_groups(labels: list[int], edges: list[list[int]], owners, rejected) -> list[int]:
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


def _one_face_a_photo(labels, n_photos, held: set, dist, pos) -> list[int]:
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
    a searching.Target keyed by its photo's id (so the person's own photos used are not returned, as a
    target folder's photos are not)."""
    from .errors import UsageError
    from .searching import Target

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
