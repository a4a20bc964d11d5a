"""What a search writes: report.html (a self-contained contact sheet of the matches), report.csv,
the annotated copies, the JSON (--json) and the table on stdout; and what search.py --people
writes of people.py's persons: index.html (one row per person) and the person-NNN/ folders.

The pages are made with the HTML kit in htmlkit.py.
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from . import imaging, outfiles, store
from . import people as clustering  # the persons index.html shows; "people" names the list of them here
from .htmlkit import esc, img_tag, page, readable_jpeg, thumbnail
from .settings import Settings
from .textsafe import csv_cell, printable

if TYPE_CHECKING:
    from .people import Person
    from .scoring import Params
    from .searching import Found, Match
    from .targets import Target

log = logging.getLogger("facegrid.report")
search_log = logging.getLogger("facegrid.search")  # what search.py writes is logged as the search's
people_log = logging.getLogger("facegrid.people")  # and what --people writes, as the clustering's
SAMPLES = 8  # face crops per person in the folder and on the page
PHOTOS_SHOWN = 12  # photo thumbnails per person on the page
PATHS_LISTED = 200  # photo paths per person on the page (photos.csv has them all)
PHOTO_THUMB = 200


def match_picture(db, m) -> bytes | None:
    """The stored annotated copy of a match's photo; in a group photo the matched face is boxed
    again in a colour of its own (imaging.MATCH_COLOR), so the copy shows which face matched."""
    jpeg = store.annotated_jpeg(db, m.image_id)
    shape = store.image_shape(db, m.image_id) if jpeg else None
    if jpeg is None or shape is None or shape[2] < 2:
        return jpeg
    return imaging.mark_face(jpeg, m.box, shape[0])


def face_crops(db, matches) -> dict[tuple[str, int], bytes]:
    out = {}
    for m in matches:
        out[(m.image_id, m.face_index)] = store.face_crop(db, m.image_id, m.face_index) or b""
    return out


def _match_card(m, crop: bytes, thumb: bytes) -> str:
    picture = img_tag(thumb, f"photo {m.rank}")
    if m.file:
        picture = f'<a class="thumb" href="{esc(m.file)}" title="open the annotated copy">{picture}</a>'
    else:
        picture = f'<div class="thumb">{picture}</div>'
    return (
        f'<article class="card">{picture}<div class="body">{img_tag(crop, f"face {m.rank}", "face")}'
        f'<div><div><span class="rank">#{m.rank}</span> '
        f'<span class="dist">distance {m.distance:.3f}</span>{_precision(m)} '
        f'<span class="badge {esc(m.confidence)}">{esc(m.confidence)}</span></div>'
        f'{_person(m)}<div class="path">{esc(m.path)}</div>{_span(m)}<div class="path">host {esc(m.host)}</div></div>'
        f"</div></article>"
    )


def _person(m) -> str:
    """The match's person in the people registry, if its face is in one."""
    label = getattr(m, "person_label", "")
    return f'<div class="person">{esc(label)}</div>' if label else ""


def _span(m) -> str:
    """A video appearance: its time span; the picture is the track's best frame, annotated."""
    if not getattr(m, "video", False):
        return ""
    from .video import clock

    return (
        f'<div class="span"><b>video {clock(m.start_s or 0)}-{clock(m.end_s or 0)}</b> '
        f'<span class="dist">({(m.end_s or 0) - (m.start_s or 0):.0f} s on screen; best frame shown)</span></div>'
    )


def _precision(m) -> str:
    p = getattr(m, "precision", None)
    sharp = getattr(m, "sharpness", None)
    face = f"face {getattr(m, 'face_px', 0)} px" + (f", sharpness {sharp:.0f}" if sharp is not None else "")
    right = f"{100 * p:.1f}% right at this score; " if p is not None else ""
    return f' <span class="dist">({right}{face})</span>'


def _header(targets, matches, settings) -> str:
    s = settings.search
    chips = "".join(
        f'<div class="target">{img_tag(t.crop, "target face")}<span class="path">{esc(t.path)}</span></div>'
        for t in targets
    )
    return (
        f"<h1>{len(matches)} match{'es' if len(matches) != 1 else ''}</h1>"
        f'<p class="sub">best first; tolerance {s.tolerance:g} (tightened among look-alikes), profile mode '
        f"{esc(s.mode)}. Confidence is the share of right matches measured at each score on a labelled "
        f"set: strong 99% or more, likely 90% or more, weak below. "
        f'Target photos used ({len(targets)}):</p><div class="targets">{chips}</div>'
    )


def render_match_report(db, matches, targets, settings) -> str:
    crops = face_crops(db, matches)
    cards = []
    for m in matches:
        jpeg = match_picture(db, m)
        cards.append(
            _match_card(
                m,
                crops[(m.image_id, m.face_index)],
                thumbnail(jpeg, what=f"{m.path} (photo {m.image_id})"),
            )
        )
    body = (
        f'<div class="grid">{"".join(cards)}</div>'
        if cards
        else '<p class="empty">No stored face is within the tolerance.</p>'
    )
    return page("facegrid matches", _header(targets, matches, settings), body)


def write_match_report(db, matches, targets, out_dir: Path, settings) -> Path:
    """report.html beside report.csv in out_dir."""
    path = Path(out_dir) / "report.html"
    path.write_text(render_match_report(db, matches, targets, settings), encoding="utf-8")
    return path


def write_outputs(db, matches: list[Match], targets: list[Target], out_dir: Path, settings: Settings) -> None:
    """Annotated copies named only from rank and id, report.csv and report.html.

    The previous run's files in out_dir go first, and only those (outfiles.py).
    """
    written = outfiles.Written(out_dir)
    written.clear_previous()
    for m in matches:
        jpeg = store.annotated_jpeg(db, m.image_id)
        if jpeg:
            if not readable_jpeg(jpeg):
                search_log.warning(
                    "%s (photo %s): its stored annotated copy is not a readable JPEG; no copy made", m.path, m.image_id
                )
                continue
            at = f"-{int(m.start_s or 0)}s" if m.video else ""  # a video's appearance: where it starts
            m.file = written.add(outfiles.match_name(m.rank, m.path, m.image_id, at))
            (out_dir / m.file).write_bytes(match_picture(db, m) or jpeg)
    with open(out_dir / written.add("report.csv"), "w", newline="", encoding="utf-8") as f:
        write_csv(f, matches)
    write_match_report(db, matches, targets, out_dir, settings)
    written.add("report.html")
    written.save()


CSV_COLUMNS = (
    "rank",
    "distance",
    "confidence",
    "path",
    "host",
    "top",
    "right",
    "bottom",
    "left",
    "image_id",
    "face_index",
    "file",
    "video_start_s",
    "video_end_s",
)


def write_csv(f, matches: list[Match]) -> None:
    """report.csv (and the web page's CSV download): one row per match, every cell made safe for
    spreadsheets (textsafe.csv_cell)."""
    w = csv.writer(f)
    w.writerow(CSV_COLUMNS)
    for m in matches:
        w.writerow(
            [
                csv_cell(v)
                for v in (
                    m.rank,
                    f"{m.distance:.4f}",
                    m.confidence,
                    m.path,
                    m.host,
                    *m.box,
                    m.image_id,
                    m.face_index,
                    m.file,
                    "" if m.start_s is None else f"{m.start_s:.3f}",
                    "" if m.end_s is None else f"{m.end_s:.3f}",
                )
            ]
        )


def as_data(found: Found, targets: list[Target], settings: Settings, out_dir: Path | None) -> dict:
    """What search.py --json prints; out is null where no copies were written (the web API)."""
    return {
        "matches": [m.as_dict() for m in found.matches],
        "targets": [t.path for t in targets],
        "tolerance": settings.search.tolerance,
        "search_tolerance": round(found.tolerance, 4),
        "mode": settings.search.mode,
        "out": None if out_dir is None else str(out_dir),
    }


def as_json(found: Found, targets: list[Target], settings: Settings, out_dir: Path) -> str:
    """search.py --json: the matches, the targets and the tolerance, as one JSON object."""
    return json.dumps(as_data(found, targets, settings, out_dir), indent=2)


def print_table(matches: list[Match]) -> None:
    """search.py's table of matches on stdout."""
    if not matches:
        return
    print(
        f"{'rank':>4}  {'distance':>8}  {'confidence':<16}  {'face':>6}  {'host':<12}  {'box (t,r,b,l)':<22}  "
        f"{'person':<16}  path"
    )
    for m in matches:
        box = ",".join(map(str, m.box))
        sure = f"{m.confidence} {100 * m.precision:.1f}%" if m.precision is not None else m.confidence
        print(
            f"{m.rank:>4}  {m.distance:8.4f}  {sure:<16}  {m.face_px:>4}px  {printable(m.host)[:12]:<12}  {box:<22}  "
            f"{printable(m.person_label or '-')[:16]:<16}  {printable(m.where)}"
        )


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


def _person_row(db, person: Person, samples: list[str]) -> str:
    crops = "".join(img_tag(f.crop, f"{person.name} face") for f in person.faces[:SAMPLES])
    photos = person.photos()
    thumbs = []
    for f in (photos + person.appearances())[:PHOTOS_SHOWN]:
        thumb = thumbnail(store.annotated_jpeg(db, f.image_id), PHOTO_THUMB, f"{f.path} (photo {f.image_id})")
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


def render_index(db, people: list[Person], samples: dict[str, list[str]], params: Params) -> str:
    faces = sum(len(p.faces) for p in people)
    header = (
        f"<h1>{len(people)} {'person' if len(people) == 1 else 'people'} in {faces} face(s)</h1>"
        f'<p class="sub">Chinese whispers clustering (tolerance {params.tolerance:g}, '
        "tightened among look-alikes), largest first. "
        f"Each person-NNN/ folder holds sample face crops: pass it to search.py as TARGET_DIR.</p>"
    )
    if not people:
        return page("facegrid people", header, '<p class="empty">The database holds no faces yet.</p>')
    rows = "".join(_person_row(db, p, samples[p.name]) for p in people)
    table = (
        f'<table class="people"><thead><tr><th>person</th><th>faces</th><th>photos</th></tr></thead>'
        f"<tbody>{rows}</tbody></table>"
    )
    return page("facegrid people", header, table)


def write_people(db, out_dir: Path, params: Params, engine=None, found: list[Person] | None = None) -> list[Person]:
    """Write index.html and the person folders: of `found` (the people registry's persons), or of
    every stored face clustered now."""
    out_dir = Path(out_dir)
    record = outfiles.Written(out_dir)
    record.clear_previous()  # the previous run's files only: numbering may have changed
    people = clustering.cluster(clustering.load_faces(db), params) if found is None else found
    record.refuse_foreign_person_dirs([p.name for p in people])
    samples = {p.name: write_folder(p, out_dir, engine, record) for p in people}
    (out_dir / record.add("index.html")).write_text(render_index(db, people, samples, params), encoding="utf-8")
    record.save()
    people_log.info("%d person(s) from %d face(s) into %s", len(people), sum(len(p.faces) for p in people), out_dir)
    return people
