"""search.py --people: who is in this collection.

Every stored face of a photo, and each video track's best face (one per
appearance), is clustered into persons with dlib's Chinese whispers graph
clustering over a graph that joins two faces when each would find the other
with search.py's own rule (the tolerance, tightened among look-alikes; see
facegrid/scoring.py) and they come from different photos. docs/search.md has
the measured BCubed quality on lfw-dev. The output folder gets:

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
"""

from __future__ import annotations

import csv
import dataclasses
import logging
from pathlib import Path

import numpy as np

from . import htmlkit, outfiles, scoring, store
from .envelope import ENCODING_DIM
from .htmlkit import esc, img_tag
from .textsafe import csv_cell

log = logging.getLogger("facegrid.people")
SAMPLES = 8  # face crops per person in the folder and on the page
PHOTOS_SHOWN = 12  # photo thumbnails per person on the page
PATHS_LISTED = 200  # photo paths per person on the page (photos.csv has them all)
PHOTO_THUMB = 200


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

    Faces of one photo are never joined; should the clustering still put two
    of them together, the one further from the person's mean starts its own.
    """
    import dlib

    n = len(encodings)
    if n <= 1:
        return [0] * n
    x = np.stack(encodings).astype(np.float32)
    photo_ids = np.unique(np.asarray(photos), return_inverse=True)[1]
    edges = scoring.neighbour_graph(x, photo_ids, params)
    pairs = [(i, j, 1.0) for i, j in edges] + [(n - 1, n - 1, 1.0)]  # the last pair makes n labels
    labels = list(dlib.chinese_whispers(pairs))
    return _split_same_photo(labels, x, photo_ids)


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


def write_folder(person: Person, out_dir: Path, engine=None, record=None) -> list[str]:
    """person-NNN/ with sample crops that each show exactly one face; returns their names.

    record: an outfiles.Written that is told every file made here.
    """
    folder = out_dir / person.name
    folder.mkdir(parents=True, exist_ok=True)
    note = record.add if record is not None else (lambda name: name)
    written: list[str] = []
    for face in person.faces:
        if len(written) >= SAMPLES:
            break
        if not face.crop or (engine is not None and not _one_face(engine, face.crop)):
            continue
        name = f"face-{face.image_id[:16]}-{face.idx}.jpg"
        note(f"{person.name}/{name}")
        (folder / name).write_bytes(face.crop)
        written.append(name)
    note(f"{person.name}/photos.csv")
    with open(folder / "photos.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["image_id", "face_index", "distance_to_mean", "path", "host", "video_start_s", "video_end_s"])
        for face, d in zip(person.faces, person.distances, strict=False):
            span = (f"{face.start_s:.3f}", f"{face.end_s:.3f}") if face.video else ("", "")
            w.writerow([csv_cell(v) for v in (face.image_id, face.idx, f"{d:.4f}", face.path, face.host, *span)])
    return written


def _one_face(engine, crop: bytes) -> bool:
    from .errors import ImageUnreadable

    try:
        return len(engine.analyse(crop).boxes) == 1
    except ImageUnreadable:
        return False


def _row(db, person: Person, samples: list[str]) -> str:
    crops = "".join(img_tag(f.crop, f"{person.name} face") for f in person.faces[:SAMPLES])
    photos = person.photos()
    thumbs = []
    for f in (photos + person.appearances())[:PHOTOS_SHOWN]:
        thumb = htmlkit.thumbnail(store.annotated_jpeg(db, f.image_id), PHOTO_THUMB, f"{f.path} (photo {f.image_id})")
        thumbs.append(f'<span title="{esc(f.where)}">{img_tag(thumb, "photo")}</span>')
    paths = "".join(f"<div>{esc(f.path)} <span>({esc(f.host)})</span></div>" for f in photos[:PATHS_LISTED])
    more = f"<div>... and {len(photos) - PATHS_LISTED} more in photos.csv</div>" if len(photos) > PATHS_LISTED else ""
    seen_in = person.appearances()
    clips = "".join(f"<div>{esc(f.where)} <span>({esc(f.host)})</span></div>" for f in seen_in[:PATHS_LISTED])
    videos = (
        f'<div class="path"><b>{len(seen_in)} video appearance(s)</b></div><div class="path">{clips}</div>'
        if seen_in
        else ""
    )
    title = f'<div class="count">{esc(person.title)}</div>' if person.title else ""
    folder = (
        f'{title}<a href="{esc(person.name)}/photos.csv">{esc(person.name)}/</a>'
        f'<div class="path">{len(samples)} target crop(s)</div>'
    )
    return (
        f'<tr><td><div class="count">{len(person.faces)}</div><div class="path">face(s) in {len(photos)} '
        f"photo(s){f' and {len(seen_in)} video appearance(s)' if seen_in else ''}</div>{folder}</td>"
        f'<td><div class="crops">{crops}</div></td>'
        f'<td><div class="photos">{"".join(thumbs)}</div>{videos}'
        f'<details><summary class="path">photo paths</summary><div class="path">{paths}{more}</div></details>'
        f"</td></tr>"
    )


def render_index(db, people: list[Person], samples: dict[str, list[str]], params: scoring.Params) -> str:
    faces = sum(len(p.faces) for p in people)
    header = (
        f"<h1>{len(people)} {'person' if len(people) == 1 else 'people'} in {faces} face(s)</h1>"
        f'<p class="sub">Chinese whispers clustering (tolerance {params.tolerance:g}, '
        "tightened among look-alikes), largest first. "
        f"Each person-NNN/ folder holds sample face crops: pass it to search.py as TARGET_DIR.</p>"
    )
    if not people:
        return htmlkit.page("facegrid people", header, '<p class="empty">The database holds no faces yet.</p>')
    rows = "".join(_row(db, p, samples[p.name]) for p in people)
    table = (
        f'<table class="people"><thead><tr><th>person</th><th>faces</th><th>photos</th></tr></thead>'
        f"<tbody>{rows}</tbody></table>"
    )
    return htmlkit.page("facegrid people", header, table)


def write_people(
    db, out_dir: Path, params: scoring.Params, engine=None, found: list[Person] | None = None
) -> list[Person]:
    """Write index.html and the person folders: of `found` (the people registry's persons), or of
    every stored face clustered now."""
    out_dir = Path(out_dir)
    record = outfiles.Written(out_dir)
    record.clear_previous()  # the previous run's files only: numbering may have changed
    people = cluster(load_faces(db), params) if found is None else found
    record.refuse_foreign_person_dirs([p.name for p in people])
    samples = {p.name: write_folder(p, out_dir, engine, record) for p in people}
    (out_dir / record.add("index.html")).write_text(render_index(db, people, samples, params), encoding="utf-8")
    record.save()
    log.info("%d person(s) from %d face(s) into %s", len(people), sum(len(p.faces) for p in people), out_dir)
    return people
