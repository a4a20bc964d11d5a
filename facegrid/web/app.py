"""The web application: routes, pages (server-rendered templates) and the API behind them.

Pages: / (Search), /results/ID, /photos/ID (Photo), /people, /watch, /status, /login.
API: POST /api/search, GET /api/people, GET /api/photos/ID, GET /api/status, GET /api/alerts,
GET /api/csrf (docs/web.md has each answer). Pictures come only from the databases' own blobs
(annotated copies, face crops) or from a search's own target crops, never from a file path.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from typing import Any

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp

from .. import __version__, video
from ..errors import FacegridError, UsageError
from ..settings import Settings
from . import security
from .gridstatus import GridStatus
from .library import PHOTO_ID, Library, check_upload, upload_name

log = logging.getLogger("facegrid.web")

PICTURE_CACHE = "private, max-age=86400"  # a photo id is its sha256; an annotated copy changes only on re-processing
PALETTE = ("#ff3d7f", "#2f8cff", "#ffb000", "#00c2a8", "#a55cff", "#ff6a00", "#00b3ff", "#e6194b", "#3cb44b")
MATCH_COLOUR = PALETTE[0]  # the matched face's box; the stored copy draws every face in green


@dataclasses.dataclass
class Config:
    db_paths: list[str]
    settings: Settings
    token: str | None = None  # --token-file's secret; None on loopback without one


class UploadTooLarge(Exception):
    pass


def create_app(config: Config, library: Library | None = None) -> ASGIApp:
    """The application inside its Guard (security.py): every request passes the access rules first."""
    lib = library or Library(config.db_paths, config.settings)
    grid = GridStatus(config.settings, config.db_paths)
    csrf = security.new_csrf()
    w = config.settings.web
    max_photo = w.max_upload_mb * 1024 * 1024
    max_body = w.max_targets * max_photo + 64 * 1024
    MultiPartParser.spool_max_size = max_body  # uploads stay in memory: a part never spills to a temporary file
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("facegrid.web", "templates"), autoescape=True, undefined=jinja2.StrictUndefined
    )
    env.globals.update(csrf=csrf, version=__version__, palette=PALETTE, match_colour=MATCH_COLOUR, clock=video.clock)
    env.filters["pct"] = lambda v: "" if v is None else f"{100 * v:.1f}%"
    env.filters["box_style"] = box_style
    env.filters["when"] = when
    templates = Jinja2Templates(env=env)

    def page(request: Request, name: str, status_code: int = 200, **context: Any) -> Response:
        context.setdefault("message", None)
        context["db_paths"] = config.db_paths
        context["authed"] = config.token is not None
        return templates.TemplateResponse(request, name, context, status_code=status_code)

    # -- search -------------------------------------------------------------------------------
    async def search_page(request: Request, result=None, message=None, status_code: int = 200) -> Response:
        named = await run_in_threadpool(lib.named_people)
        context = {"result": result, "words": scoring_words(), "persons": named, "message": message}
        return page(request, "search.html", status_code, **context)

    async def search_post(request: Request) -> Response:
        try:
            photos = await read_targets(request, csrf, max_photo, max_body, w.max_targets)
            result = await run_in_threadpool(lib.search_photos, photos)
        except security.CsrfError as exc:
            return await search_page(request, message=str(exc), status_code=403)
        except UploadTooLarge as exc:
            return await search_page(request, message=str(exc), status_code=413)
        except FacegridError as exc:
            return await search_page(request, message=str(exc), status_code=400)
        return RedirectResponse(f"/results/{result.id}", status_code=303)

    async def search_get(request: Request) -> Response:
        """A search from a stored face (?face=PHOTO.N) or a person of the registry (?person=DB.ID)."""
        face, person = request.query_params.get("face", ""), request.query_params.get("person", "")
        image_id, _, idx = face.partition(".")
        k, _, pid = person.partition(".")
        try:
            if PHOTO_ID.match(image_id) and idx.isdigit():
                result = await run_in_threadpool(lib.search_face, image_id, int(idx))
            elif k.isdigit() and pid.isdigit():
                result = await run_in_threadpool(lib.search_person, int(k), int(pid))
            else:
                return RedirectResponse("/", status_code=303)
        except FacegridError as exc:
            return await search_page(request, message=str(exc), status_code=404)
        return RedirectResponse(f"/results/{result.id}", status_code=303)

    async def results_page(request: Request) -> Response:
        result = lib.result(request.path_params["rid"])
        if result is None:
            return await search_page(request, message=EXPIRED, status_code=404)
        return await search_page(request, result=result)

    async def results_csv(request: Request) -> Response:
        result = lib.result(request.path_params["rid"])
        if result is None:
            return PlainTextResponse(EXPIRED, status_code=404)
        return Response(lib.csv(result), media_type="text/csv; charset=utf-8", headers=download("report.csv"))

    async def results_json(request: Request) -> Response:
        result = lib.result(request.path_params["rid"])
        if result is None:
            return JSONResponse({"error": EXPIRED}, status_code=404)
        body = json.dumps(result.data, indent=2).encode()
        return Response(body, media_type="application/json", headers=download("matches.json"))

    async def target_crop(request: Request) -> Response:
        result = lib.result(request.path_params["rid"])
        k = request.path_params["k"]
        if result is None or k >= len(result.targets) or not result.targets[k].crop:
            return PlainTextResponse("no such target", status_code=404)
        return jpeg(result.targets[k].crop)

    # -- photos -------------------------------------------------------------------------------
    async def photo_page(request: Request) -> Response:
        info = await run_in_threadpool(lib.photo, request.path_params["pid"])
        if info is None:
            return page(request, "photo.html", 404, photo=None, message="no stored photo has this id")
        return page(request, "photo.html", photo=info)

    async def photo_api(request: Request) -> Response:
        info = await run_in_threadpool(lib.photo, request.path_params["pid"])
        if info is None:
            return JSONResponse({"error": "no stored photo has this id"}, status_code=404)
        pid = info["id"]
        info["annotated"] = f"/photos/{pid}/annotated.jpg"
        for f in info["faces"]:
            f["crop"] = f"/faces/{pid}/{f['idx']}.jpg"
            f["search"] = f"/search?face={pid}.{f['idx']}"
        return JSONResponse(info)

    async def thumb(request: Request) -> Response:
        return jpeg(await run_in_threadpool(lib.thumbnail, request.path_params["pid"]))

    async def annotated(request: Request) -> Response:
        return jpeg(await run_in_threadpool(lib.annotated, request.path_params["pid"]))

    async def face_crop(request: Request) -> Response:
        return jpeg(await run_in_threadpool(lib.crop, request.path_params["pid"], request.path_params["idx"]))

    # -- people and watches -------------------------------------------------------------------
    async def people_page(request: Request) -> Response:
        return page(request, "people.html", people=await run_in_threadpool(lib.people))

    async def person_page(request: Request) -> Response:
        k, pid = request.path_params["k"], request.path_params["pid"]
        found = await run_in_threadpool(lib.person, k, pid)
        if found is None:
            return page(request, "person.html", 404, person=None, message=f"no person {pid} in the registry")
        return page(request, "person.html", person=found)

    async def people_api(request: Request) -> Response:
        found = await run_in_threadpool(lib.people)
        for p in found:
            p["crop"] = f"/faces/{p['best']['image_id']}/{p['best']['idx']}.jpg" if p["best"] else None
        return JSONResponse({"people": found})

    async def person_write(request: Request) -> Response:
        """Rename, merge, split or "not this person": one registry change through the store."""
        k, action = request.path_params["k"], request.path_params.get("action", "merge")
        pid = request.path_params.get("pid")
        if pid is not None and action not in ("name", "split", "reject"):
            return PlainTextResponse("no such change; rename, split or reject", status_code=404)
        back = f"/people/{k}/{pid}" if pid is not None and action in ("split", "reject") else "/people"
        try:
            form = await security.form_with_csrf(request, csrf, max_files=0, max_fields=2000)
            if action == "name":
                await run_in_threadpool(lib.write, k, "name_person", pid, str(form.get("name", "")))
            elif action == "merge":
                ids = [int(v) for v in form.getlist("person") if isinstance(v, str) and v.isdigit()]
                if len(ids) < 2:
                    raise UsageError("check two or more persons to merge them into the first checked")
                await run_in_threadpool(lib.write, k, "merge_persons", ids[0], ids[1:])
            else:
                faces = [face_key(v) for v in form.getlist("face")]
                if not faces:
                    raise UsageError("check the faces first")
                change = "split_person" if action == "split" else "reject_faces"
                await run_in_threadpool(lib.write, k, change, pid, faces)
        except (security.CsrfError, MultiPartException, HTTPException) as exc:
            return PlainTextResponse(str(getattr(exc, "detail", None) or exc), status_code=403)
        except FacegridError as exc:
            if pid is not None and action in ("split", "reject"):
                found = await run_in_threadpool(lib.person, k, int(pid))
                return page(request, "person.html", 400, person=found, message=str(exc))
            return page(request, "people.html", 400, people=await run_in_threadpool(lib.people), message=str(exc))
        return RedirectResponse(back, status_code=303)

    async def watch_page(request: Request) -> Response:
        watches = await run_in_threadpool(lib.watches)
        return page(request, "watch.html", watches=watches, alerts=await run_in_threadpool(lib.alerts, -1))

    async def alerts_api(request: Request) -> Response:
        after = request.query_params.get("after", "-1")
        offset = int(after) if after.lstrip("-").isdigit() else -1
        return JSONResponse(await run_in_threadpool(lib.alerts, offset))

    # -- status -------------------------------------------------------------------------------
    async def status_page(request: Request) -> Response:
        return page(request, "status.html")

    async def status_api(request: Request) -> Response:
        return JSONResponse(await run_in_threadpool(grid.snapshot))

    # -- the API ------------------------------------------------------------------------------
    async def api_search(request: Request) -> Response:
        try:
            photos = await read_targets(request, csrf, max_photo, max_body, w.max_targets)
            result = await run_in_threadpool(lib.search_photos, photos)
        except security.CsrfError as exc:
            return JSONResponse({"error": str(exc)}, status_code=403)
        except UploadTooLarge as exc:
            return JSONResponse({"error": str(exc)}, status_code=413)
        except FacegridError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(result.data, headers={"X-Facegrid-Result": result.id})

    async def api_csrf(request: Request) -> Response:
        return JSONResponse({"csrf": csrf, "header": "X-CSRF-Token", "field": "csrf"})

    # -- login --------------------------------------------------------------------------------
    async def login_page(request: Request) -> Response:
        return page(request, "login.html", next=safe_next(request.query_params.get("next")))

    async def login_post(request: Request) -> Response:
        try:
            form = await security.form_with_csrf(request, csrf, max_files=0, max_fields=4)
        except (security.CsrfError, MultiPartException, HTTPException) as exc:
            return page(request, "login.html", 403, next="/", message=str(exc))
        given, nxt = str(form.get("token", "")), safe_next(str(form.get("next", "/")))
        if config.token is None:
            return RedirectResponse(nxt, status_code=303)
        if not security.hmac.compare_digest(given, config.token):
            return page(request, "login.html", 401, next=nxt, message="that is not the token; try again")
        response = RedirectResponse(nxt, status_code=303)
        response.set_cookie(
            security.COOKIE, security.login_cookie(config.token), httponly=True, samesite="strict", max_age=12 * 3600
        )
        return response

    async def logout_post(request: Request) -> Response:
        try:
            await security.form_with_csrf(request, csrf, max_files=0, max_fields=2)
        except (security.CsrfError, MultiPartException, HTTPException) as exc:
            return PlainTextResponse(str(exc), status_code=403)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(security.COOKIE)
        return response

    routes = [
        Route("/", search_page),
        Route("/search", search_post, methods=["POST"]),
        Route("/search", search_get),
        Route("/results/{rid:str}.csv", results_csv),
        Route("/results/{rid:str}.json", results_json),
        Route("/results/{rid:str}/targets/{k:int}.jpg", target_crop),
        Route("/results/{rid:str}", results_page),
        Route("/photos/{pid:str}/thumb.jpg", thumb),
        Route("/photos/{pid:str}/annotated.jpg", annotated),
        Route("/photos/{pid:str}", photo_page),
        Route("/faces/{pid:str}/{idx:int}.jpg", face_crop),
        Route("/people", people_page),
        Route("/people/{k:int}/merge", person_write, methods=["POST"]),
        Route("/people/{k:int}/{pid:int}", person_page),
        Route("/people/{k:int}/{pid:int}/{action:str}", person_write, methods=["POST"]),
        Route("/watch", watch_page),
        Route("/status", status_page),
        Route("/login", login_page),
        Route("/login", login_post, methods=["POST"]),
        Route("/logout", logout_post, methods=["POST"]),
        Route("/api/search", api_search, methods=["POST"]),
        Route("/api/photos/{pid:str}", photo_api),
        Route("/api/status", status_api),
        Route("/api/people", people_api),
        Route("/api/alerts", alerts_api),
        Route("/api/csrf", api_csrf),
        Mount("/static", StaticFiles(packages=[("facegrid.web", "static")]), name="static"),
    ]
    app = Starlette(routes=routes)
    app.state.library, app.state.grid = lib, grid
    return security.Guard(app, config.token, csrf)


EXPIRED = "this search is no longer kept (the server keeps the last few); search again"


def scoring_words() -> list[str]:
    """scoring.confidence's words, surest first (the filter's checkboxes)."""
    return ["strong", "likely", "weak"]


def box_style(box: dict | tuple, size: tuple[int, int], colour: str) -> str:
    """A face box as CSS percentages of its photo (boxes are in original pixels, the picture is scaled)."""
    top, right, bottom, left = (box["top"], box["right"], box["bottom"], box["left"]) if isinstance(box, dict) else box
    w, h = size
    if w <= 0 or h <= 0:
        return "display:none"
    return (
        f"left:{100 * left / w:.2f}%;top:{100 * top / h:.2f}%;width:{100 * (right - left) / w:.2f}%;"
        f"height:{100 * (bottom - top) / h:.2f}%;border-color:{colour}"
    )


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


def when(t) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if isinstance(t, int | float) else ""


def jpeg(data: bytes | None) -> Response:
    if not data:
        return PlainTextResponse("no picture stored", status_code=404)
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": PICTURE_CACHE})


def download(name: str) -> dict[str, str]:
    return {"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"}


def safe_next(value: str | None) -> str:
    """Where to go after logging in: a path on this server only."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value
