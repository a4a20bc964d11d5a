#!/usr/bin/env python3
"""Measure search and --people on a labelled folder, through the real grid.

    .venv/bin/python scripts/evaluate.py                      # ../shared/lfw-dev, sizes 500, 2000, all
    .venv/bin/python scripts/evaluate.py --limit 400          # a quick slice (what the tests run)
    .venv/bin/python scripts/evaluate.py ../shared/faces --sizes all
    .venv/bin/python scripts/evaluate.py --reuse --curve docs/search-pr.png --calibrate

The folder holds the photos and labels.csv: `path,identity` (one person a photo)
or `path,faces,identities` (identities `;`-separated). The photos go through
queuer.py, filter.py and collector.py on a private beanstalkd into one
database (kept in --work; --reuse skips this when it is there already). Smaller
galleries are copies of that database holding a subset of the people.

Search protocol: for every person with 3+ photos in the gallery, the first two
photos (by path) are the target; every other photo of the person is relevant;
anything else returned is a false match. Targets are the stored encodings of
those photos (the filter's pipeline on the same bytes, exactly what search.py
computes for them); a target photo with no face or several is left out, as
search.py does (and if it is returned, it counts neither way). Precision and
recall are summed over all searches.

--people quality is BCubed precision, recall and F over the faces of labelled
photos in which exactly one face was found, clustering the whole gallery. Beside it,
the same figures for the people registry when the gallery arrives in --batches
batches (photos in a fixed pseudo-random order), the registry updated after each
(facegrid/registry.py): a registry kept up to date should hold the figures of
clustering at once. --person-targets N,N measures search.py --person with N faces of
each person of the registry made at once as the targets.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import sys
import time
import zlib
from collections import Counter
from pathlib import Path

import numpy as np

from facegrid import cli, people, registry, scoring, searching, store
from facegrid import settings as settings_mod
from facegrid import targets as targets_mod
from facegrid.errors import FacegridError, UsageError

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # the private grid, development code
import localgrid  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

DEFAULT_PHOTOS = ROOT.parent / "shared" / "lfw-dev"
REACH = 1.6  # curves follow the score up to 1.6 x each search's tolerance
CROWDED_RADIUS = 0.55  # the crowded slice: strangers counted within this distance of a profile ...
TIMED_TARGETS = 60  # target photos encoded both ways (with and without the mirror) to time the mirror
CROWDED_SHARE = 0.2  # ... and the fifth of the searches with the most of them


@dataclasses.dataclass
class Labelled:
    folder: Path
    identities: dict[str, frozenset[str]]  # relative path -> people in it

    def person_photos(self, paths: set[str]) -> dict[str, list[str]]:
        """Photos showing exactly one labelled person, by person, in path order."""
        out: dict[str, list[str]] = {}
        for path in sorted(paths):
            ids = self.identities[path]
            if len(ids) == 1:
                out.setdefault(next(iter(ids)), []).append(path)
        return out


def read_labels(folder: Path) -> Labelled:
    labels = folder / "labels.csv"
    if not labels.exists():
        raise UsageError(f"{labels} not found; pass a labelled folder (path,identity per photo)")
    ids = {}
    with open(labels, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            raw = row.get("identity") or row.get("identities") or ""
            ids[row["path"]] = frozenset(x for x in raw.split(";") if x and x != "unknown")
    return Labelled(folder, ids)


def pick_people(lab: Labelled, limit: int) -> set[str]:
    """Whole people, in a fixed pseudo-random order, until `limit` photos (0: all)."""
    if not limit or limit >= len(lab.identities):
        return set(lab.identities)
    by_person: dict[str, list[str]] = {}
    for path, ids in lab.identities.items():
        by_person.setdefault(min(ids) if ids else path, []).append(path)
    chosen: list[str] = []
    for person in sorted(by_person, key=lambda p: zlib.crc32(p.encode())):
        if len(chosen) >= limit:
            break
        chosen += by_person[person]
    return set(chosen)


def build_gallery(lab: Labelled, paths: set[str], work: Path, workers: int, extra: list[str], reuse: bool) -> Path:
    """Run the real grid over the photos; returns the database."""
    db = work / "gallery.db"
    stamp = work / "gallery.json"
    want = {"photos": zlib.crc32("\n".join(sorted(paths)).encode()), "extra": extra}
    if reuse and db.exists() and stamp.exists() and json.loads(stamp.read_text()) == want:
        log(f"reusing {db}")
        return db
    for old in work.glob("gallery*"):
        if old.is_file():
            old.unlink()
    if len(paths) == len(lab.identities):
        folders = [lab.folder]
    else:  # a slice: copy it, so the queuer walks exactly these photos
        folders = [work / "slice"]
        for rel in sorted(paths):
            dest = folders[0] / rel
            if not dest.exists():
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes((lab.folder / rel).read_bytes())
    t0 = time.monotonic()
    log(f"queuing {len(paths)} photos through the grid ({workers} filter workers)")
    localgrid.run_grid(folders, db, work / "grid", workers, tuple(extra))
    log(f"grid done in {time.monotonic() - t0:.0f}s")
    stamp.write_text(json.dumps(want))
    return db


def relpath(stored: str, lab: Labelled) -> str | None:
    """The labels.csv path of a stored photo path (stored paths are as queued)."""
    parts = Path(stored).parts
    for i in range(len(parts)):
        rel = "/".join(parts[i:])
        if rel in lab.identities:
            return rel
    return None


def gallery_rows(db) -> dict[str, str]:
    """image id -> stored path."""
    return {r[0]: r[1] for r in db.execute("SELECT id, path FROM images")}


def subset_db(full: Path, ids: list[str], dest: Path) -> Path:
    """A database with only these photos (rows copied, schema made by store.open_db)."""
    for p in (dest, Path(f"{dest}-wal"), Path(f"{dest}-shm")):
        p.unlink(missing_ok=True)
    store.copy_photos(store.open_db(dest), full, ids)
    return dest


@dataclasses.dataclass
class Outcome:
    """Per search: the scores of what came back, and which were right."""

    scores: list[np.ndarray] = dataclasses.field(default_factory=list)
    right: list[np.ndarray] = dataclasses.field(default_factory=list)
    strong: list[np.ndarray] = dataclasses.field(default_factory=list)  # the match was called strong
    people: list[str] = dataclasses.field(default_factory=list)  # who each search was for
    wanted: list[int] = dataclasses.field(default_factory=list)  # each search's relevant photos
    faceless: list[int] = dataclasses.field(default_factory=list)  # ... of them with no face found
    untargeted: list[int] = dataclasses.field(default_factory=list)  # ... of a search with no target photo
    relevant: int = 0
    searches: int = 0

    def at(self, reach: float) -> tuple[int, int, int]:
        tp = sum(int(np.sum(r & (s <= reach))) for s, r in zip(self.scores, self.right, strict=False))
        fp = sum(int(np.sum(~r & (s <= reach))) for s, r in zip(self.scores, self.right, strict=False))
        return tp, fp, self.relevant - tp

    def only(self, people: set[str]) -> Outcome:
        """The searches for these people alone."""
        keep = [i for i, who in enumerate(self.people) if who in people]
        out = Outcome(
            [self.scores[i] for i in keep],
            [self.right[i] for i in keep],
            [self.strong[i] for i in keep],
            [self.people[i] for i in keep],
            [self.wanted[i] for i in keep],
            [self.faceless[i] for i in keep],
            [self.untargeted[i] for i in keep],
        )
        out.relevant, out.searches = sum(out.wanted), len(keep)
        return out

    def misses(self) -> dict[str, int]:
        """Why relevant photos were not matched: the search had no target photo, the filter found no
        face in the photo, its score was just over 1 (up to 1.1), further out (up to REACH), or beyond."""
        no_target, no_face = sum(self.untargeted), sum(self.faceless)
        over = [s[r & (s > 1.0)] for s, r in zip(self.scores, self.right, strict=True)]
        near = sum(int(np.sum(o <= 1.1)) for o in over)
        far = sum(int(np.sum(o > 1.1)) for o in over)
        beyond = self.at(1.0)[2] - no_target - no_face - near - far
        return {"no_target": no_target, "no_face": no_face, "near": near, "far": far, "beyond": beyond}

    def strong_precision(self) -> tuple[float | None, int]:
        """Share of right matches among those called strong, and how many were."""
        right = sum(int(np.sum(r & s)) for r, s in zip(self.right, self.strong, strict=True))
        called = sum(int(np.sum(s)) for s in self.strong)
        return (right / called if called else None), called


def pr(tp: int, fp: int, fn: int) -> tuple[float, float]:
    return (tp / (tp + fp) if tp + fp else 1.0), (tp / (tp + fn) if tp + fn else 1.0)


def target_photos(lab: Labelled, paths: set[str]) -> dict[str, list[str]]:
    """Each searched person's target photos (the first two by path) and the rest: person -> photos."""
    return {who: photos for who, photos in sorted(lab.person_photos(paths).items()) if len(photos) >= 3}


def encode_targets(lab: Labelled, people_photos: dict[str, list[str]], settings, work: Path) -> dict[str, np.ndarray]:
    """Target photo -> its encoding, made as search.py makes it (targets.encode_target: the filter's
    pipeline, the main face of a photo with several, and the mirror image with [search] target_mirror),
    with each person's targets kept as search.py keeps them (targets.agreeing); cached in work by
    settings and photos."""
    from facegrid.faces import FaceEngine

    mirror = settings.search.target_mirror == "on"
    wanted = sorted({p for photos in people_photos.values() for p in photos[:2]})
    rule = f"mirror={mirror} main={targets_mod.MAIN_FACE_AREA} retry={targets_mod.RETRY_SIDE}"
    key = zlib.crc32(("\n".join(wanted) + repr(settings.filter) + rule + repr(settings.search.mixed_distance)).encode())
    cache = work / f"targets-{key:08x}.npz"
    if cache.exists():
        with np.load(cache) as z:
            return {p: z[p] for p in z.files}
    log(f"encoding {len(wanted)} target photos as search.py does (mirror {'on' if mirror else 'off'})")
    engine = FaceEngine(settings.filter)
    found, took = {}, {True: [], False: []}
    for n, rel in enumerate(wanted):
        data = (lab.folder / rel).read_bytes()
        for way in (mirror, not mirror) if n < TIMED_TARGETS else (mirror,):  # both ways, side by side
            t0 = time.perf_counter()
            target, _why = targets_mod.encode_target(engine, rel, data, way)
            took[way].append(time.perf_counter() - t0)
            if target is not None and way == mirror:
                found[rel] = target
    with_mirror, without = (1e3 * float(np.median(took[w][:TIMED_TARGETS])) for w in (True, False))
    log(
        f"a target photo took {with_mirror:.0f} ms with its mirror image, {without:.0f} ms without "
        f"(medians over {min(len(wanted), TIMED_TARGETS)} photos, each timed both ways)"
    )
    out, left_out = {}, 0
    for photos in people_photos.values():
        kept, dropped = targets_mod.agreeing(
            [found[p] for p in photos[:2] if p in found], settings.search.mixed_distance
        )
        out.update({t.path: t.encoding for t in kept})
        left_out += len(dropped)
    picked = sum(t.picked for t in found.values())
    log(
        f"{len(found)} of {len(wanted)} target photos give a face ({picked} the main one of several, "
        f"{left_out} of those left out as someone else)"
    )
    np.savez(cache, **out)
    return out


def run_searches(db_path: Path, lab: Labelled, params: scoring.Params, mode: str, targets: dict) -> Outcome:
    db = store.open_db(db_path, create=False)
    coll = searching.open_store([str(db_path)])
    stored = gallery_rows(db)
    rel_of = {i: relpath(p, lab) for i, p in stored.items()}
    id_of = {r: i for i, r in rel_of.items() if r}
    with_face = {r[0] for r in db.execute("SELECT DISTINCT image_id FROM faces")}
    out = Outcome()
    for person, photos in target_photos(lab, set(id_of)).items():
        relevant = {id_of[p] for p in photos[2:]}
        out.relevant += len(relevant)
        out.searches += 1
        chosen = [targets_mod.Target(p, id_of[p], targets[p], b"") for p in photos[:2] if p in targets]
        shown = []
        if chosen:
            found = searching.find(coll, chosen, params, mode, reach=REACH)
            shown = [m for m in found.matches if m.image_id not in {id_of[p] for p in photos[:2]}]
        out.scores.append(np.array([m.score for m in shown]))
        out.right.append(np.array([m.image_id in relevant for m in shown], dtype=bool))
        out.strong.append(np.array([m.confidence == "strong" and m.score <= 1.0 for m in shown], dtype=bool))
        out.people.append(person)
        out.wanted.append(len(relevant))
        out.untargeted.append(0 if chosen else len(relevant))
        out.faceless.append(len(relevant - with_face) if chosen else 0)
    return out


def crowded_people(full: Path, lab: Labelled, targets: dict, share: float = CROWDED_SHARE) -> set[str]:
    """The crowded slice: the searched people whose profile (the mean of their target encodings) has the
    most strangers (faces in other people's photos) within CROWDED_RADIUS in the whole gallery, the top
    `share` of them. A rule over the gallery and its labels, never a list of names."""
    db = store.open_db(full, create=False)
    rel_of = {i: relpath(p, lab) for i, p in gallery_rows(db).items()}
    who, enc = [], []
    for image_id, blob in db.execute("SELECT image_id, encoding FROM faces"):
        rel = rel_of.get(image_id)
        who.append(next(iter(lab.identities[rel])) if rel and len(lab.identities[rel]) == 1 else "")
        enc.append(np.frombuffer(blob, "<f4"))
    x, faces_of = np.stack(enc), np.asarray(who)
    counts = {}
    for person, photos in target_photos(lab, {r for r in rel_of.values() if r}).items():
        chosen = [targets[p] for p in photos[:2] if p in targets]
        if chosen:
            d = np.linalg.norm(x - np.mean(chosen, axis=0), axis=1)
            counts[person] = int(np.sum((d < CROWDED_RADIUS) & (faces_of != person)))
    if not counts:
        return set()
    cut = np.quantile(list(counts.values()), 1 - share)
    return {p for p, n in counts.items() if n >= cut}


def bcubed(db_path: Path, lab: Labelled, params: scoring.Params, found=None) -> tuple[float, float, float, int]:
    """BCubed of the persons found (default: every face clustered at once, people.cluster)."""
    db = store.open_db(db_path, create=False)
    rel_of = {i: relpath(p, lab) for i, p in gallery_rows(db).items()}
    faces = people.load_faces(db)
    per_photo: dict[str, int] = {}
    for f in faces:
        per_photo[f.image_id] = per_photo.get(f.image_id, 0) + 1
    labels = {}
    for person in people.cluster(faces, params) if found is None else found:
        for f in person.faces:
            rel = rel_of.get(f.image_id)
            if per_photo[f.image_id] == 1 and rel and len(lab.identities[rel]) == 1:
                labels[(f.image_id, f.idx)] = (person.number, next(iter(lab.identities[rel])))
    from collections import Counter

    cl = Counter(c for c, _ in labels.values())
    gt = Counter(g for _, g in labels.values())
    both = Counter(labels.values())
    precision = float(np.mean([both[x] / cl[x[0]] for x in labels.values()])) if labels else 1.0
    recall = float(np.mean([both[x] / gt[x[1]] for x in labels.values()])) if labels else 1.0
    f = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f, len(labels)


def registry_in_batches(full: Path, batches: int, params: scoring.Params, work: Path) -> Path:
    """A new database that receives the gallery's photos in `batches` batches (a fixed pseudo-random
    order), its people registry updated after each (store.copy_photos, registry.update)."""
    dest = work / "registry-batches.db"
    for p in (dest, Path(f"{dest}-wal"), Path(f"{dest}-shm")):
        p.unlink(missing_ok=True)
    ids = sorted(gallery_rows(store.open_db(full, create=False)), key=lambda i: zlib.crc32(i.encode()))
    db = store.open_db(dest)
    for k in range(batches):
        store.copy_photos(db, full, ids[k::batches])
        log(registry.update(db, params).line())
    db.conn.close()
    return dest


def person_searches(kept: Path, lab: Labelled, params: scoring.Params, mode: str, counts: list[int]) -> dict:
    """search.py --person with n of each person's faces as the targets (registry.PERSON_TARGETS), over
    the persons of 6 faces or more: every other photo of the person's main identity is relevant."""
    db = store.open_db(kept, create=False)
    rel_of = {i: relpath(p, lab) for i, p in gallery_rows(db).items()}
    photos_of: dict[str, set[str]] = {}
    for i, r in rel_of.items():
        for who in lab.identities[r] if r else ():
            photos_of.setdefault(who, set()).add(i)
    coll = searching.open_store([str(kept)])
    chosen = [p["id"] for p in store.persons(db) if p["faces"] >= 6]
    out = {}
    for n in counts:
        registry.PERSON_TARGETS = n
        tp = fp = fn = 0
        for pid in chosen:
            _, _, targets = registry.person_targets(coll, str(pid))
            labels = [
                x for f in store.person_faces(db, pid) for x in lab.identities.get(rel_of[f["image_id"]] or "", ())
            ]
            relevant = photos_of[Counter(labels).most_common(1)[0][0]] - {t.id for t in targets}
            got = {m.image_id for m in searching.find(coll, targets, params, mode).matches}
            tp, fp, fn = tp + len(got & relevant), fp + len(got - relevant), fn + len(relevant - got)
        out[n] = (len(chosen), *pr(tp, fp, fn), tp, fp, fn)
    return out


def calibration(outcome: Outcome, edges: np.ndarray) -> list[tuple[float, float]]:
    """Precision per score bin, pooled until it never rises with the score."""
    scores = np.concatenate(outcome.scores) if outcome.scores else np.zeros(0)
    right = np.concatenate(outcome.right) if outcome.right else np.zeros(0, bool)
    blocks = []  # [upper edge, right, total]
    lo = -np.inf
    for hi in edges:
        sel = (scores > lo) & (scores <= hi)
        lo = hi
        if sel.any():
            blocks.append([float(hi), int(right[sel].sum()), int(sel.sum())])
    pooled: list[list] = []
    for b in blocks:
        pooled.append(b)
        while len(pooled) > 1 and pooled[-1][1] / pooled[-1][2] > pooled[-2][1] / pooled[-2][2]:
            last = pooled.pop()
            pooled[-1] = [last[0], pooled[-1][1] + last[1], pooled[-1][2] + last[2]]
    return [(round(e, 3), round(r / n, 3)) for e, r, n in pooled]


def plot(curves: dict[str, Outcome], marks: dict[str, tuple[float, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5), dpi=110)
    reaches = np.linspace(0.3, REACH, 131)
    for name, o in curves.items():
        pts = [pr(*o.at(r)) for r in reaches]
        ax.plot([r for _, r in pts], [p for p, _ in pts], label=name)
    for name, (p, r) in marks.items():
        ax.plot([r], [p], "o", color="black")
        ax.annotate(name, (r, p), textcoords="offset points", xytext=(6, -12), fontsize=8)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0.4, 1.0)
    ax.set_ylim(0.4, 1.005)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    ax.set_title("search on lfw-dev: precision against recall")
    fig.tight_layout()
    fig.savefig(path)
    log(f"wrote {path}")


def log(msg: str) -> None:
    print(f"[evaluate {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("photos", nargs="?", default=str(DEFAULT_PHOTOS), help="labelled folder (default ../shared/lfw-dev)")
    p.add_argument(
        "--sizes", default="500,2000,all", help="gallery sizes in photos, comma-separated (all: every photo)"
    )
    p.add_argument("--limit", type=int, default=0, help="use only about N photos (whole people); 0: all")
    p.add_argument("--work", default=str(ROOT / "eval-run"), help="folder for the databases (default ./eval-run)")
    p.add_argument("--reuse", action="store_true", help="reuse the gallery database in --work if it matches")
    p.add_argument("--workers", type=int, default=2, help="filter worker processes")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="settings override")
    p.add_argument("--curve", metavar="PNG", help="write the precision-recall curve")
    p.add_argument("--calibrate", action="store_true", help="print the score -> precision table for scoring.py")
    p.add_argument("--json", action="store_true", help="end with one JSON object of every figure")
    p.add_argument(
        "--batches",
        type=int,
        default=10,
        metavar="N",
        help="people registry: the gallery in N batches, updated after each, against clustering at once (0: off)",
    )
    p.add_argument(
        "--person-targets",
        metavar="N,N",
        help="search.py --person with N of each person's faces as the targets, for each N (e.g. 1,2,4,8)",
    )
    args = p.parse_args(argv)
    folder = Path(args.photos)
    if not (folder / "labels.csv").exists():
        print(
            f"evaluate.py: {folder}/labels.csv not found: the labelled photos are absent; "
            "pass a labelled folder (see --help)",
            file=sys.stderr,
        )
        return 2
    try:
        settings = settings_mod.load(None, cli.parse_set(args.set))
        return evaluate(args, folder, settings)
    except (FacegridError, ValueError) as exc:
        print(f"evaluate.py: {exc}", file=sys.stderr)
        return 2


def evaluate(args, folder: Path, settings) -> int:
    lab = read_labels(folder)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    paths = pick_people(lab, args.limit)
    filter_flags = [f"--set={s}" for s in args.set if s.startswith("filter.")]
    full = build_gallery(lab, paths, work, args.workers, filter_flags, args.reuse)
    db = store.open_db(full, create=False)
    stored = {i: relpath(p, lab) for i, p in gallery_rows(db).items()}
    n_all = len(stored)
    sizes = sorted({n_all if s.strip() == "all" else min(int(s), n_all) for s in args.sizes.split(",")})
    s = settings.search
    params = s.params()
    plain = dataclasses.replace(params, lookalike_count=0, expand_count=0)
    figures: dict = {
        "photos": n_all,
        "faces": store.counts(db)["faces"],
        "tolerance": s.tolerance,
        "lookalike_count": s.lookalike_count,
        "lookalike_spread": s.lookalike_spread,
        "lookalike_ratio": s.lookalike_ratio,
        "mode": s.mode,
        "background": s.background,
        "target_mirror": s.target_mirror,
        "sizes": {},
    }
    print(
        f"{'gallery':>8} {'people':>7} {'searches':>8} {'precision':>9} {'recall':>7} {'tp':>6} {'fp':>5} {'fn':>5}"
        f"   plain tolerance {s.tolerance:g}: {'precision':>9} {'recall':>7}"
    )
    curves, marks, outcome_full = {}, {}, None
    people_photos = target_photos(lab, {r for r in stored.values() if r})
    targets = encode_targets(lab, people_photos, settings, work)
    crowded = crowded_people(full, lab, targets)
    rest = set(people_photos) - crowded
    for n in sizes:
        if n == n_all:
            db_n = full
        else:
            keep = pick_people(Labelled(lab.folder, {r: lab.identities[r] for r in stored.values() if r}), n)
            db_n = subset_db(full, [i for i, r in stored.items() if r in keep], work / f"gallery-{n}.db")
        o = run_searches(db_n, lab, params, s.mode, targets)
        o_plain = run_searches(db_n, lab, plain, s.mode, targets)
        tp, fp, fn = o.at(1.0)
        prec, rec = pr(tp, fp, fn)
        pp, rp = pr(*o_plain.at(1.0))
        people_n = len({x for r in stored.values() if r for x in lab.identities[r]}) if n == n_all else None
        print(
            f"{n:>8} {people_n or '':>7} {o.searches:>8} {prec:>9.3f} {rec:>7.3f} {tp:>6} {fp:>5} {fn:>5}"
            f"   {'':>20}{pp:>9.3f} {rp:>7.3f}",
            flush=True,
        )
        figures["sizes"][str(n)] = {
            "searches": o.searches,
            "precision": round(prec, 4),
            "recall": round(rec, 4),
            "tp": tp,
            "fp": fp,
            "fn": fn,
            "plain_precision": round(pp, 4),
            "plain_recall": round(rp, 4),
        }
        for name, part in (("crowded", o.only(crowded)), ("rest", o.only(rest)), ("all", o)):
            ptp, pfp, pfn = part.at(1.0)
            sp, called = part.strong_precision()
            slice_p, slice_r = pr(ptp, pfp, pfn)
            print(
                f"{'':>8} {name:>16} {part.searches:>8} {slice_p:>9.3f} {slice_r:>7.3f} {ptp:>6} {pfp:>5} {pfn:>5}"
                f"   strong: {called} match(es), {'-' if sp is None else f'{sp:.3f}'} right",
                flush=True,
            )
            figures["sizes"][str(n)][name] = {
                "searches": part.searches,
                "precision": round(slice_p, 4),
                "recall": round(slice_r, 4),
                "fp": pfp,
                "fn": pfn,
                "strong_matches": called,
                "strong_precision": None if sp is None else round(sp, 4),
                "misses": part.misses(),
            }
        m = o.misses()
        print(
            f"{'':>8} {'misses':>16}   {m['no_target']} no target photo, {m['no_face']} no face found, "
            f"{m['near']} scored 1-1.1, {m['far']} 1.1-{REACH}, {m['beyond']} beyond",
            flush=True,
        )
        curves[f"{n} photos"] = o
        marks[f"default, {n}"] = (prec, rec)
        if n == n_all:
            outcome_full = o
            curves[f"{n} photos, plain tolerance"] = o_plain
    t0 = time.monotonic()
    bp, br, bf, nf = bcubed(full, lab, params)
    print(
        f"--people ({time.monotonic() - t0:.0f}s): BCubed precision {bp:.3f} recall {br:.3f} F {bf:.3f} over {nf} faces"
    )
    figures["people"] = {
        "bcubed_precision": round(bp, 4),
        "bcubed_recall": round(br, 4),
        "bcubed_f": round(bf, 4),
        "faces": nf,
    }
    if args.batches > 0:
        t0 = time.monotonic()
        kept = registry_in_batches(full, args.batches, params, work)
        rp, rr, rf, rn = bcubed(kept, lab, params, registry.people_of(store.open_db(kept, create=False)))
        print(
            f"--people, registry in {args.batches} batches ({time.monotonic() - t0:.0f}s): BCubed precision {rp:.3f} "
            f"recall {rr:.3f} F {rf:.3f} over {rn} faces (at once: {bp:.3f} {br:.3f} {bf:.3f})"
        )
        figures["people_registry"] = {
            "batches": args.batches,
            "bcubed_precision": round(rp, 4),
            "bcubed_recall": round(rr, 4),
            "bcubed_f": round(rf, 4),
            "faces": rn,
        }
    if args.person_targets:
        kept = registry_in_batches(full, 1, params, work)  # one batch: the registry clustered at once
        figures["person_targets"] = {}
        for n, (persons, tp_p, tp_r, tp, fp, fn) in person_searches(
            kept, lab, params, s.mode, [int(x) for x in args.person_targets.split(",")]
        ).items():
            print(
                f"--person, {n} target face(s): precision {tp_p:.3f} recall {tp_r:.3f} ({persons} persons, "
                f"tp {tp} fp {fp} fn {fn})"
            )
            figures["person_targets"][str(n)] = {"precision": round(tp_p, 4), "recall": round(tp_r, 4)}
    if args.curve:
        plot(curves, marks, Path(args.curve))
    if args.calibrate and outcome_full is not None:
        table = calibration(outcome_full, np.round(np.arange(0.5, REACH + 1e-9, 0.05), 3))
        print("CALIBRATION = (" + ", ".join(f"({e}, {p})" for e, p in table) + ")")
        figures["calibration"] = table
        for name, part in (("crowded", outcome_full.only(crowded)), ("rest", outcome_full.only(rest))):
            print(f"calibration, {name} slice: {calibration(part, np.round(np.arange(0.5, 1.0 + 1e-9, 0.05), 3))}")
    if args.json:
        print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
