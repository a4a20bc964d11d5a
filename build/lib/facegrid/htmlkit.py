"""The HTML kit of facegrid's self-contained pages (report.html, people/index.html).

Every picture is inline as a data: URI (thumbnails are small), the only links point
at files beside the page, and every path or host shown is passed through
html.escape: a page opens from disk with no server and fetches nothing.
"""

from __future__ import annotations

import base64
import html
import io
import logging
import time

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
        opened = Image.open(io.BytesIO(jpeg), formats=("JPEG",))
        opened.draft("RGB", (side, side))
        img = opened.convert("RGB")
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
