"""The web server's rules of access, in one ASGI middleware (Guard) and a few checks.

- Where it listens: a loopback address needs nothing; any other needs a token file
  (check_bind). With a token, every request but the login page and the static assets
  carries it: `Authorization: Bearer TOKEN`, or the login cookie that POST /login
  sets (an HMAC of the token, HttpOnly, SameSite=Strict).
- Host header: on loopback without a token only loopback names are answered, so a
  page on another site cannot reach the server through DNS rebinding.
- Writing requests (any method but GET, HEAD, OPTIONS) carry the CSRF token: the
  X-CSRF-Token header, or for a form the `csrf` field (checked by form_with_csrf as
  the form is read). A request whose Origin is another site is refused outright.
- Every answer says: no framing, no sniffing, no referrer, scripts and styles only
  from this server (Content-Security-Policy).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from pathlib import Path
from urllib.parse import urlsplit

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import UsageError

SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
COOKIE = "facegrid_login"
OPEN_PATHS = ("/login", "/static/")  # reachable without the token
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "[::1]"}
MIN_TOKEN = 16
HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' blob: data:; "
        b"connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]


def is_loopback(host: str) -> bool:
    if host.strip("[]") in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def read_token(path: str) -> str:
    """The secret in --token-file: one line of 16+ printable characters, in a file only its owner reads."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8").strip()
        mode = p.stat().st_mode
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--token-file {path}: cannot read it ({exc}); pass a file holding the token") from None
    if mode & 0o077:
        raise UsageError(f"--token-file {path}: others may read it; chmod 600 {path}")
    if len(text) < MIN_TOKEN or not text.isprintable() or " " in text:
        raise UsageError(
            f"--token-file {path}: the token must be one word of {MIN_TOKEN} or more characters; make one with: "
            f"python3 -c 'import secrets; print(secrets.token_urlsafe(32))' > {path}"
        )
    return text


def check_bind(host: str, token: str | None) -> None:
    if not is_loopback(host) and token is None:
        raise UsageError(
            f"--host {host}: not a loopback address, so anyone who reaches it could search the photos; "
            "pass --token-file FILE (a secret every request must carry) or keep --host 127.0.0.1"
        )


class Guard:
    """The access rules above, around the whole application."""

    def __init__(self, app: ASGIApp, token: str | None, csrf: str):
        self.app = app
        self.token = token
        self.csrf = csrf
        self.cookie = login_cookie(token) if token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        refusal = self.refusal(request)

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = list(message["headers"]) + HEADERS
            await send(message)

        if refusal is not None:
            await refusal(scope, receive, with_headers)
            return
        await self.app(scope, receive, with_headers)

    def refusal(self, request: Request) -> Response | None:
        host = (request.headers.get("host") or "").rsplit(":", 1)[0]
        if self.token is None and not is_loopback(host):
            return _refuse(request, 421, f"this server answers on localhost only (Host {host[:60]!r})")
        origin = request.headers.get("origin")
        if origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host"):
            return _refuse(request, 403, "a request from another site's page; open this server's own page")
        if self.token is not None and not self.authorised(request):
            if request.method in SAFE_METHODS and not request.url.path.startswith("/api/"):
                return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
            return _refuse(request, 401, "send Authorization: Bearer TOKEN (the --token-file's) or log in at /login")
        if request.method not in SAFE_METHODS:
            given = request.headers.get("x-csrf-token")
            is_form = request.headers.get("content-type", "").startswith(
                ("multipart/form-data", "application/x-www-form-urlencoded")
            )
            if given is None and is_form:
                request.scope.setdefault("state", {})["csrf_in_form"] = True  # form_with_csrf checks the field
            elif not (given and hmac.compare_digest(given, self.csrf)):
                return _refuse(request, 403, "missing or wrong CSRF token: send X-CSRF-Token from GET /api/csrf")
        return None

    def authorised(self, request: Request) -> bool:
        if any(request.url.path.startswith(p) for p in OPEN_PATHS):
            return True
        assert self.token is not None and self.cookie is not None
        bearer = request.headers.get("authorization", "")
        if bearer.lower().startswith("bearer ") and hmac.compare_digest(bearer[7:].strip(), self.token):
            return True
        return hmac.compare_digest(request.cookies.get(COOKIE, ""), self.cookie)


def login_cookie(token: str) -> str:
    """The cookie's value: an HMAC of the token, so the token itself is never stored in a browser."""
    return hmac.new(token.encode(), b"facegrid web login", hashlib.sha256).hexdigest()


def _refuse(request: Request, status: int, why: str) -> Response:
    if request.url.path.startswith("/api/") or "text/html" not in request.headers.get("accept", ""):
        return JSONResponse({"error": why}, status_code=status)
    return Response(f"{status}: {why}\n", status_code=status, media_type="text/plain")


class CsrfError(Exception):
    pass


async def form_with_csrf(request: Request, csrf: str, **limits) -> FormData:
    """The request's form (within limits), its csrf field checked when the header was not sent."""
    form = await request.form(**limits)
    if request.scope.get("state", {}).get("csrf_in_form"):
        given = form.get("csrf")
        if not (isinstance(given, str) and hmac.compare_digest(given, csrf)):
            await form.close()
            raise CsrfError("missing or wrong CSRF token in the form; reload the page and try again")
    return form


def new_csrf() -> str:
    """Made once per server process; pages carry it in a meta tag and their forms, never in a URL."""
    return secrets.token_urlsafe(24)
