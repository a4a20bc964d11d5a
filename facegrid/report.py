"""What a search writes: report.html (a self-contained contact sheet of the matches), report.csv,
the annotated copies, the JSON (--json) and the table on stdout.

The page is made with the HTML kit in htmlkit.py (shared with people.py's index.html).
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from . import imaging, outfiles, store
from .htmlkit import esc, img_tag, page, readable_jpeg, thumbnail
from .settings import Settings
from .textsafe import csv_cell, printable

if TYPE_CHECKING:
    from .searching import Found, Match, Target

log = logging.getLogger("facegrid.report")
search_log = logging.getLogger("facegrid.search")  # what search.py writes is logged as the search's


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
