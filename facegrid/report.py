"""report.html: a self-contained contact sheet of search matches.

The page is made with the HTML kit in htmlkit.py (shared with people.py's index.html).
"""

from __future__ import annotations

import logging
from pathlib import Path

from . import imaging, store
from .htmlkit import esc, img_tag, page, thumbnail

log = logging.getLogger("facegrid.report")


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
        f'<div class="path">{esc(m.path)}</div>{_span(m)}<div class="path">host {esc(m.host)}</div></div>'
        f"</div></article>"
    )


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
