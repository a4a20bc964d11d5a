"""search.py's work: target photos -> profile -> ranked matches -> files.

The target photos and their faces are targets.py's.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
from pathlib import Path

import numpy as np

from . import background, crowding, imaging, scoring, store, video
from . import index as index_mod
from .databases import Collection
from .errors import UsageError
from .targets import Target

log = logging.getLogger("facegrid.search")


@dataclasses.dataclass
class Match:
    rank: int
    distance: float
    image_id: str
    face_index: int
    path: str
    host: str
    box: tuple[int, int, int, int]
    score: float  # distance / this face's tolerance in this search (face_tolerances): a match has 1 or less
    confidence: str
    precision: float | None  # measured on lfw-dev at this score (docs/search.md)
    face_px: int = 0  # width of the face in its photo
    sharpness: float | None = None  # of the stored face crop (imaging.sharpness)
    database: str = ""  # the database it came from, when several are searched
    file: str = ""  # the annotated copy written to --out, relative to it
    video: bool = False  # an appearance in a video: image_id/box are its track's best frame and face
    start_s: float | None = None  # the appearance's span in the video, in seconds
    end_s: float | None = None
    person: dict | None = None  # {"id", "name"}: the people registry's person of this face, if any

    @property
    def person_label(self) -> str:
        """The person's name, or person-ID while unnamed; "" for a face in no person."""
        if not self.person:
            return ""
        return self.person["name"] or f"person-{self.person['id']:03d}"

    @property
    def where(self) -> str:
        """The path, and for a video the span: clip.mp4 @ 00:00:11-00:00:16."""
        if not self.video:
            return self.path
        return f"{self.path} @ {video.clock(self.start_s or 0)}-{video.clock(self.end_s or 0)}"

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        if not self.video:
            for key in ("video", "start_s", "end_s"):
                del d[key]
        d["box"] = {"top": self.box[0], "right": self.box[1], "bottom": self.box[2], "left": self.box[3]}
        d["sharpness"] = None if self.sharpness is None else round(self.sharpness, 1)
        d["distance"] = round(self.distance, 4)
        d["score"] = round(self.score, 4)
        return d


@dataclasses.dataclass
class Found:
    """What one search returns: the matches and the tolerance this search used."""

    matches: list[Match]
    tolerance: float


def check_out(target: str, out: Path) -> None:
    """An output folder inside the target folder would hand the next search its own annotated
    copies as target photos: refused."""
    if not os.path.isdir(target):
        return
    t, o = Path(target).resolve(), out.resolve()
    if o == t or t in o.parents:
        raise UsageError(
            f"--out {out} is inside the target folder {target}: the next search would take its "
            "annotated copies for photos of the person; pass an --out outside it"
        )


def default_out(base: str, target: str) -> Path:
    """[search] out/<target folder name>, or /<photo name without extension> for one photo."""
    name = Path(target.rstrip("/")).resolve()
    return Path(base) / (name.stem if name.is_file() else name.name)


def find(
    coll: Collection,
    targets: list[Target],
    params: scoring.Params,
    mode: str,
    limit: int = 0,
    reach: float = 1.0,
    options: index_mod.SearchOptions | None = None,
) -> Found:
    """Stored faces within their tolerance in this search (face_tolerances), best face per photo, ranked by score.

    Several databases are searched as one collection: the look-alike rule and
    the second pass see all of their faces. reach > 1 also returns faces up to
    reach x the tolerance (the evaluation's curves). options: how the index is read (the
    exact scan, for the tests and the bench).
    """
    parts = [index_mod.load(db, path) for path, db in coll]
    idx = index_mod.FaceIndex.joined(parts, options)
    if not len(idx):
        return Found([], params.tolerance)
    params = for_collection(idx, coll, params)
    near, tol, _ = settle(idx, np.stack([t.encoding for t in targets]), params, mode, reach)
    tols = face_tolerances(idx, near, tol, params, reach)
    score = near.dist / tols
    sel = np.flatnonzero(score <= reach)
    sel = sel[np.argsort(score[sel], kind="stable")]
    hits, hit_dist, hit_tol = near.positions[sel], near.dist[sel], tols[sel]
    owner = np.searchsorted(np.cumsum([len(part) for part in parts]), hits, side="right")  # database of each hit
    rows, in_track = _hit_rows(coll, idx, hits, owner)
    target_ids = {t.id for t in targets}
    matches: list[Match] = []
    from_db: list[int] = []  # the database of each match
    seen: set[str] = set()
    for i, k, hit_d, hit_t in zip(hits, owner, hit_dist, hit_tol, strict=True):
        row = rows.get((int(k), int(idx.rowids[i])))
        if row is None or row["image_id"] in target_ids:
            continue
        tr = in_track.get((int(k), row["image_id"], row["idx"]))
        key = f"track:{tr['video_id']}:{tr['track']}" if tr else row["image_id"]
        if key in seen:
            continue
        seen.add(key)
        database = coll.paths[int(k)] if len(coll) > 1 else ""
        matches.append(_match(coll.dbs[int(k)], len(matches) + 1, float(hit_d), float(hit_t), row, tr, database))
        from_db.append(int(k))
        if limit and len(matches) >= limit:
            break
    _label_persons(coll, matches, from_db)
    return Found(matches, tol)


def face_tolerances(
    idx: index_mod.FaceIndex, near: index_mod.Near, tol: float, params: scoring.Params, reach: float = 1.0
) -> np.ndarray:
    """Each near face's tolerance in this search (scoring.candidate_tolerance): the search's own
    where the face's own look-alikes cannot change its answer, else the two combined."""
    tols = np.full(len(near.dist), tol, dtype=np.float64)
    ask = np.flatnonzero(scoring.needs_own(near.dist, tol, params, reach))
    if len(ask):
        own = crowding.own_tolerances(idx, near.rows[ask], params)
        tols[ask] = scoring.candidate_tolerance(tol, own, params)
    return tols


def _hit_rows(coll: Collection, idx: index_mod.FaceIndex, hits: np.ndarray, owner: np.ndarray):
    """(rows, in_track) of the hits: (database, rowid) -> the face's row, and (database, image id, face
    index) -> the track a video's face belongs to (one result per appearance)."""
    rows: dict[tuple[int, int], dict] = {}
    in_track: dict[tuple[int, str, int], dict] = {}
    for k, db in enumerate(coll.dbs):
        mine = hits[owner == k]
        found_rows = _face_rows(db, [int(idx.rowids[i]) for i in mine])
        rows.update({(k, r): row for r, row in found_rows.items()})
        for face_key, track in store.face_tracks(db, [(r["image_id"], r["idx"]) for r in found_rows.values()]).items():
            in_track[(k, *face_key)] = track
    return rows, in_track


def _match(db, rank: int, d: float, tol: float, row: dict, tr: dict | None, database: str) -> Match:
    """The match of one stored face at distance d. A video's appearance (tr, its track) is shown by its
    best face (largest, sharpest) and ranked by its closest one."""
    if tr:
        best = store.face_row(db, tr["best_image_id"], tr["best_idx"]) or row
        row = dict(row, image_id=best["image_id"], idx=best["idx"], crop=best["crop"], path=tr["path"])
        row.update({side: best[side] for side in ("top", "right", "bottom", "left")})
    box = (row["top"], row["right"], row["bottom"], row["left"])
    face_px, sharp = max(0, box[1] - box[3]), imaging.sharpness(row["crop"])
    word, precision = scoring.confidence(d / tol, face_px, sharp)
    return Match(
        rank=rank,
        distance=d,
        image_id=row["image_id"],
        face_index=row["idx"],
        path=row["path"],
        host=row["host"],
        box=box,
        score=d / tol,
        confidence=word,
        precision=precision,
        face_px=face_px,
        sharpness=sharp,
        database=database,
        video=tr is not None,
        start_s=tr["start_s"] if tr else None,
        end_s=tr["end_s"] if tr else None,
    )


def _label_persons(coll: Collection, matches: list[Match], from_db: list[int]) -> None:
    """Each match's person in the people registry of its database (store.persons_of_faces)."""
    for k, db in enumerate(coll.dbs):
        mine = [m for m, owner in zip(matches, from_db, strict=True) if owner == k]
        found = store.persons_of_faces(db, [(m.image_id, m.face_index) for m in mine])
        for m in mine:
            m.person = found.get((m.image_id, m.face_index))


def _near(idx: index_mod.FaceIndex, targets: np.ndarray, params: scoring.Params, mode: str, reach: float):
    """The faces that decide this profile's answer, and its tolerance: the nearest faces, as far out as
    the look-alike rule needs (scoring.settled), at most the far radius (scoring.radius)."""
    found: list[float] = []
    crowd = background.fill(len(idx), params.background)  # a small collection's model look-alikes
    crowd_dist = index_mod.profile_distances(crowd, targets, mode)

    def counted(near: index_mod.Near) -> tuple[np.ndarray, np.ndarray]:
        """The faces the look-alike rule counts: the stored ones found, and the model crowd."""
        if not len(crowd):
            return near.dist, near.rows
        return np.concatenate([near.dist, crowd_dist]), np.concatenate([near.rows, crowd])

    def settled(near: index_mod.Near, r: float) -> bool:
        tol = scoring.settled(*counted(near), targets, params, r, reach)
        found[:] = [] if tol is None else [tol]
        return tol is not None

    near = idx.near(targets, mode, scoring.radius(params, reach), settled)
    if found:
        return near, found[0]
    return near, scoring.search_tolerance(*counted(near), targets, params)


def for_collection(idx: index_mod.FaceIndex, coll: Collection, params: scoring.Params) -> scoring.Params:
    """The params a search of this collection uses: with its typical d_k, which the look-alike rule's
    crowd factor compares a profile's d_k with (crowding.py)."""
    if params.crowd_power <= 0:
        return params
    return dataclasses.replace(params, typical=crowding.typical(idx, params, cache_dir(coll)))


def cache_dir(coll: Collection) -> Path | None:
    """Where a collection's measured figures are kept: its (first) database's index folder; several
    databases searched as one keep theirs apart, under a name made from all their paths."""
    paths = [str(path) for path, _db in coll]
    if not paths:
        return None
    folder = index_mod.index_dir(paths[0])
    if len(paths) > 1:
        folder = folder / ("together-" + hashlib.sha256("\n".join(paths).encode()).hexdigest()[:16])
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return folder


def settle(idx: index_mod.FaceIndex, encodings: np.ndarray, params: scoring.Params, mode: str, reach: float = 1.0):
    """A search's rule for these target encodings: (the faces near its profile, its tolerance, the
    targets it ends with). A first pass, then again from the targets and the surest matches of the pass
    before, while those grow in number (at most expand_rounds more passes)."""
    near, tol = _near(idx, encodings, params, mode, reach)
    wider = encodings
    for _ in range(params.expand_rounds):
        more = scoring.expanded(encodings, near.dist, near.rows, tol, params)
        if len(more) <= len(wider):
            break
        wider = more
        near, tol = _near(idx, wider, params, mode, reach)
    return near, tol, wider


def _face_rows(db, rowids: list[int]) -> dict[int, dict]:
    return store.face_rows(db, rowids)


def open_store(db_paths: list[str]) -> Collection:
    """Read-only: search never changes a database, and refuses one that is not facegrid's."""
    return Collection(db_paths)
