"""The route handlers: each page and API answer, and the table of routes that maps URLs to them.

Handlers are plain module-level functions; what they serve (the Config, the opened Library, the
GridStatus, the CSRF token, the templates and the upload limits) is on request.app.state, set
once by app.create_app.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from ..errors import FacegridError, UsageError
from . import security
from .gridstatus import GridStatus
from .library import PHOTO_ID, Library, Result
from .pages import page, scoring_words
from .uploads import UploadLimits, UploadTooLarge, download, face_key, jpeg, read_targets, safe_next

if TYPE_CHECKING:
    from .app import Config

EXPIRED = "this search is no longer kept (the server keeps the last few); search again"


def _library(request: Request) -> Library:
    """The databases the app serves (create_app opened them)."""
    return request.app.state.library


def _csrf(request: Request) -> str:
    """This server's CSRF token: every form and every API write must carry it."""
    return request.app.state.csrf


async def _targets(request: Request) -> list[tuple[str, bytes]]:
    """The uploaded target photos, within this server's upload limits."""
    limits: UploadLimits = request.app.state.limits
    return await read_targets(request, _csrf(request), limits.max_photo, limits.max_body, limits.max_targets)


def _result(request: Request) -> Result | None:
    """The kept search result the URL names, or None once it has expired."""
    return _library(request).result(request.path_params["rid"])


# -- search -------------------------------------------------------------------------------
async def search_page(request: Request, result=None, message=None, status_code: int = 200) -> Response:
    named = await run_in_threadpool(_library(request).named_people)
    context = {"result": result, "words": scoring_words(), "persons": named, "message": message}
    return page(request, "search.html", status_code, **context)


async def search_post(request: Request) -> Response:
    try:
        photos = await _targets(request)
        result = await run_in_threadpool(_library(request).search_photos, photos)
    except security.CsrfError as exc:
        return await search_page(request, message=str(exc), status_code=403)
    except UploadTooLarge as exc:
        return await search_page(request, message=str(exc), status_code=413)
    except FacegridError as exc:
        return await search_page(request, message=str(exc), status_code=400)
    return RedirectResponse(f"/results/{result.id}", status_code=303)


async def search_get(request: Request) -> Response:
    """A search from a stored face (?face=PHOTO.N) or a person of the registry (?person=DB.ID)."""
    lib = _library(request)
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
    result = _result(request)
    if result is None:
        return await search_page(request, message=EXPIRED, status_code=404)
    return await search_page(request, result=result)


async def results_csv(request: Request) -> Response:
    result = _result(request)
    if result is None:
        return PlainTextResponse(EXPIRED, status_code=404)
    return Response(_library(request).csv(result), media_type="text/csv; charset=utf-8", headers=download("report.csv"))


async def results_json(request: Request) -> Response:
    result = _result(request)
    if result is None:
        return JSONResponse({"error": EXPIRED}, status_code=404)
    body = json.dumps(result.data, indent=2).encode()
    return Response(body, media_type="application/json", headers=download("matches.json"))


async def target_crop(request: Request) -> Response:
    result = _result(request)
    k = request.path_params["k"]
    if result is None or k >= len(result.targets) or not result.targets[k].crop:
        return PlainTextResponse("no such target", status_code=404)
    return jpeg(result.targets[k].crop)


# -- photos -------------------------------------------------------------------------------
async def photo_page(request: Request) -> Response:
    info = await run_in_threadpool(_library(request).photo, request.path_params["pid"])
    if info is None:
        return page(request, "photo.html", 404, photo=None, message="no stored photo has this id")
    return page(request, "photo.html", photo=info)


async def photo_api(request: Request) -> Response:
    info = await run_in_threadpool(_library(request).photo, request.path_params["pid"])
    if info is None:
        return JSONResponse({"error": "no stored photo has this id"}, status_code=404)
    pid = info["id"]
    info["annotated"] = f"/photos/{pid}/annotated.jpg"
    for f in info["faces"]:
        f["crop"] = f"/faces/{pid}/{f['idx']}.jpg"
        f["search"] = f"/search?face={pid}.{f['idx']}"
    return JSONResponse(info)


async def thumb(request: Request) -> Response:
    return jpeg(await run_in_threadpool(_library(request).thumbnail, request.path_params["pid"]))


async def annotated(request: Request) -> Response:
    return jpeg(await run_in_threadpool(_library(request).annotated, request.path_params["pid"]))


async def face_crop(request: Request) -> Response:
    lib = _library(request)
    return jpeg(await run_in_threadpool(lib.crop, request.path_params["pid"], request.path_params["idx"]))


# -- people and watches -------------------------------------------------------------------
async def people_page(request: Request) -> Response:
    return page(request, "people.html", people=await run_in_threadpool(_library(request).people))


async def person_page(request: Request) -> Response:
    k, pid = request.path_params["k"], request.path_params["pid"]
    found = await run_in_threadpool(_library(request).person, k, pid)
    if found is None:
        return page(request, "person.html", 404, person=None, message=f"no person {pid} in the registry")
    return page(request, "person.html", person=found)


async def people_api(request: Request) -> Response:
    found = await run_in_threadpool(_library(request).people)
    for p in found:
        p["crop"] = f"/faces/{p['best']['image_id']}/{p['best']['idx']}.jpg" if p["best"] else None
    return JSONResponse({"people": found})


async def person_write(request: Request) -> Response:
    """Rename, merge, split or "not this person": one registry change through the store."""
    lib = _library(request)
    k, action = request.path_params["k"], request.path_params.get("action", "merge")
    pid = request.path_params.get("pid")
    if pid is not None and action not in ("name", "split", "reject"):
        return PlainTextResponse("no such change; rename, split or reject", status_code=404)
    back = f"/people/{k}/{pid}" if pid is not None and action in ("split", "reject") else "/people"
    try:
        form = await security.form_with_csrf(request, _csrf(request), max_files=0, max_fields=2000)
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
    lib = _library(request)
    watches = await run_in_threadpool(lib.watches)
    return page(request, "watch.html", watches=watches, alerts=await run_in_threadpool(lib.alerts, -1))


async def alerts_api(request: Request) -> Response:
    after = request.query_params.get("after", "-1")
    offset = int(after) if after.lstrip("-").isdigit() else -1
    return JSONResponse(await run_in_threadpool(_library(request).alerts, offset))


# -- status -------------------------------------------------------------------------------
async def status_page(request: Request) -> Response:
    return page(request, "status.html")


async def status_api(request: Request) -> Response:
    grid: GridStatus = request.app.state.grid
    return JSONResponse(await run_in_threadpool(grid.snapshot))


# -- the API ------------------------------------------------------------------------------
async def api_search(request: Request) -> Response:
    try:
        photos = await _targets(request)
        result = await run_in_threadpool(_library(request).search_photos, photos)
    except security.CsrfError as exc:
        return JSONResponse({"error": str(exc)}, status_code=403)
    except UploadTooLarge as exc:
        return JSONResponse({"error": str(exc)}, status_code=413)
    except FacegridError as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    return JSONResponse(result.data, headers={"X-Facegrid-Result": result.id})


async def api_csrf(request: Request) -> Response:
    return JSONResponse({"csrf": _csrf(request), "header": "X-CSRF-Token", "field": "csrf"})


# -- login --------------------------------------------------------------------------------
async def login_page(request: Request) -> Response:
    return page(request, "login.html", next=safe_next(request.query_params.get("next")))


async def login_post(request: Request) -> Response:
    config: Config = request.app.state.config
    try:
        form = await security.form_with_csrf(request, _csrf(request), max_files=0, max_fields=4)
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
        await security.form_with_csrf(request, _csrf(request), max_files=0, max_fields=2)
    except (security.CsrfError, MultiPartException, HTTPException) as exc:
        return PlainTextResponse(str(exc), status_code=403)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(security.COOKIE)
    return response


def routes() -> list[BaseRoute]:
    """Every URL the site answers, in matching order (the first that matches wins), and the static assets."""
    return [
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
