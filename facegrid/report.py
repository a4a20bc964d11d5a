"""report.html: a self-contained contact sheet of search matches.

Every picture is inline as a data: URI (thumbnails are small), the only links
point at files beside the report, and every path or host shown is passed through
html.escape: the page opens from disk with no server and fetches nothing.
``page`` and ``data_uri`` are shared with people.py's index.html.
"""

from __future__ import annotations

import base64
import html
import io
import logging
import time
from pathlib import Path

from PIL import Image

log = logging.getLogger("facegrid.report")
THUMB_SIDE = 360  # longest side of an inline thumbnail, in pixels
THUMB_QUALITY = 72

CSS = """
:root { --ink:#1d2430; --muted:#5d6775; --line:#dde2e8; --bg:#f5f7fa; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--ink);
       background: var(--bg); }
header { background: #fff; border-bottom: 1px solid var(--line); padding: 18px 28px; }
h1 { font-size: 20px; margin: 0 0 4px; }
.sub { color: var(--muted); margin: 0; }
main { padding: 20px 28px; }
.targets { display: flex; flex-wrap: wrap; gap: 10px; margin-top: 12px; }
.target { display: flex; align-items: center; gap: 8px; background: var(--bg); border: 1px solid var(--line);
          border-radius: 8px; padding: 6px 10px 6px 6px; max-width: 360px; }
.target img { width: 56px; height: 56px; object-fit: cover; border-radius: 6px; }
.path { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 12px; color: var(--muted);
        overflow-wrap: anywhere; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(270px, 1fr)); gap: 16px; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 10px; overflow: hidden;
        display: flex; flex-direction: column; }
.card .thumb { display: block; background: #e9edf2; height: 190px; }
.card .thumb img { width: 100%; height: 190px; object-fit: contain; display: block; }
.card .body { padding: 10px 12px 12px; display: flex; gap: 10px; }
.card .face { width: 64px; height: 64px; object-fit: cover; border-radius: 8px; flex: none; }
.rank { font-weight: 600; }
.dist { font-variant-numeric: tabular-nums; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 999px; font-size: 12px; font-weight: 600; }
.strong { background: #dff5e3; color: #17662a; } .likely { background: #fff1cc; color: #7a5600; }
.weak { background: #fde2e1; color: #8a1f17; }
.empty { color: var(--muted); padding: 40px 0; text-align: center; font-size: 16px; }
table.people { border-collapse: collapse; width: 100%; background: #fff; border: 1px solid var(--line); }
table.people td, table.people th { border-bottom: 1px solid var(--line); padding: 10px 12px; vertical-align: top;
                                   text-align: left; }
table.people th { background: #eef1f5; font-size: 12px; text-transform: uppercase; letter-spacing: .04em;
                  color: var(--muted); }
.crops { display: flex; flex-wrap: wrap; gap: 6px; }
.crops img { width: 64px; height: 64px; object-fit: cover; border-radius: 6px; }
.photos { display: flex; flex-wrap: wrap; gap: 6px; }
.photos img { height: 88px; max-width: 180px; object-fit: cover; border-radius: 4px; display: block; }
table.people td:first-child { width: 150px; } table.people td:nth-child(2) { width: 300px; }
.count { font-size: 22px; font-weight: 600; }
footer { color: var(--muted); padding: 0 28px 24px; font-size: 12px; }
"""


def esc(value) -> str:
    return html.escape(str(value), quote=True)


def data_uri(jpeg: bytes | None) -> str:
    """A data: URI for JPEG bytes ('' when there are none)."""
    if not jpeg:
        return ""
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")


def readable_jpeg(data: bytes | None) -> bool:
    """Do these bytes decode as a JPEG? (at 1/8 scale: cheap)"""
    if not data:
        return False
    try:
        with Image.open(io.BytesIO(data), formats=("JPEG",)) as img:
            img.draft("RGB", (64, 64))
            img.load()
        return True
    except Exception:  # Pillow raises many kinds for a hostile blob
        return False


def thumbnail(jpeg: bytes | None, side: int = THUMB_SIDE, what: str = "a photo") -> bytes:
    """A small JPEG copy, so the inline page stays light; b'' for a blob that does not decode."""
    if not jpeg:
        return b""
    try:
        img = Image.open(io.BytesIO(jpeg), formats=("JPEG",))
        img.draft("RGB", (side, side))
        img = img.convert("RGB")
    except Exception:  # a stored blob that is not a JPEG: shown as "(no picture)", never fatal
        log.warning("%s: its stored annotated copy is not a readable JPEG; shown without a picture", what)
        return b""
    img.thumbnail((side, side), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=THUMB_QUALITY, optimize=True)
    return buf.getvalue()


def img_tag(jpeg: bytes | None, alt: str, cls: str = "") -> str:
    if not jpeg:
        return f'<span class="{esc(cls)} path">(no picture)</span>'
    klass = f' class="{esc(cls)}"' if cls else ""
    return f'<img{klass} src="{data_uri(jpeg)}" alt="{esc(alt)}">'


def page(title: str, header_html: str, body_html: str) -> str:
    stamp = time.strftime("%Y-%m-%d %H:%M")
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; img-src data:; '
        f"style-src 'unsafe-inline'\">"
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
        f"<header>{header_html}</header><main>{body_html}</main>"
        f"<footer>facegrid, {esc(stamp)}. Pictures are inline; links open the copies beside this file."
        f"</footer></body></html>\n"
    )


def face_crops(db, matches) -> dict[tuple[str, int], bytes]:
    out = {}
    for m in matches:
        row = db.execute("SELECT crop FROM faces WHERE image_id = ? AND idx = ?", [m.image_id, m.face_index]).fetchone()
        out[(m.image_id, m.face_index)] = row[0] if row and row[0] else b""
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
        row = db.execute("SELECT jpeg FROM annotated WHERE image_id = ?", [m.image_id]).fetchone()
        cards.append(
            _match_card(
                m,
                crops[(m.image_id, m.face_index)],
                thumbnail(row[0] if row else None, what=f"{m.path} (photo {m.image_id})"),
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
