"""What the pages take in and hand out: uploaded target photos, form values, pictures and downloads.

Uploads are checked before anything reads them (a Content-Length within the limits, the CSRF
token, each photo by library.check_upload); the answers here carry the caching and download
headers the pages rely on.
"""

from __future__ import annotations

import dataclasses

from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from ..errors import FacegridError, UsageError
from . import security
from .library import PHOTO_ID, check_upload, upload_name

PICTURE_CACHE = "private, max-age=86400"  # a photo id is its sha256; an annotated copy changes only on re-processing


@dataclasses.dataclass(frozen=True)
class UploadLimits:
    """How much one search may upload: bytes per photo, bytes per request, photos per request."""

    max_photo: int
    max_body: int
    max_targets: int


class UploadTooLarge(Exception):
    """An upload over [web] max_upload_mb or max_targets, or without a Content-Length (answered 413)."""


async def read_targets(
    request: Request, csrf: str, max_photo: int, max_body: int, max_targets: int
) -> list[tuple[str, bytes]]:
    """The `target` files of a multipart form, each checked (library.check_upload), kept in memory."""
    length = request.headers.get("content-length")
    if length is None or not length.isdigit():
        raise UploadTooLarge("send the photos as a multipart form with a Content-Length")
    if int(length) > max_body:
        raise UploadTooLarge(
            f"the upload is {int(length):,} bytes, over the limit of {max_body:,} ([web] max_upload_mb, max_targets)"
        )
    try:
        form = await security.form_with_csrf(request, csrf, max_files=max_targets, max_fields=8)
    except (MultiPartException, HTTPException) as exc:
        why = getattr(exc, "detail", None) or exc
        raise FacegridError(
            f"the form cannot be read ({why}); send up to {max_targets} photos as field target"
        ) from None
    try:
        photos = []
        for k, item in enumerate(form.getlist("target")):
            if isinstance(item, str):
                continue
            data = await item.read(max_photo + 1)
            name = upload_name(item.filename, data, k)
            check_upload(name, data, max_photo)
            photos.append((name, data))
    finally:
        await form.close()
    if not photos:
        raise FacegridError("no photo was sent; pick or drop one or more photos of the person (form field target)")
    return photos


def face_key(value) -> tuple[str, int]:
    """A face as the person page names it: PHOTO_ID.N."""
    image_id, _, idx = str(value).partition(".")
    if not PHOTO_ID.match(image_id) or not idx.isdigit():
        raise UsageError(f"face {str(value)[:80]!r}: not a face of this page; reload it")
    return image_id, int(idx)


def jpeg(data: bytes | None) -> Response:
    """A stored JPEG, cached privately (its URL names what it shows); 404 when nothing is stored."""
    if not data:
        return PlainTextResponse("no picture stored", status_code=404)
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": PICTURE_CACHE})


def download(name: str) -> dict[str, str]:
    """The headers of a file the browser saves as `name`, kept in no cache."""
    return {"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"}


def safe_next(value: str | None) -> str:
    """Where to go after logging in: a path on this server only."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value
