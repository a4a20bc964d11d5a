"""The web application: routes, pages (server-rendered templates) and the API behind them.

Pages: / (Search), /results/ID, /photos/ID (Photo), /people, /watch, /status, /login.
API: POST /api/search, GET /api/people, GET /api/photos/ID, GET /api/status, GET /api/alerts,
GET /api/csrf (docs/web.md has each answer). Pictures come only from the databases' own blobs
(annotated copies, face crops) or from a search's own target crops, never from a file path.

This module assembles the app; handlers.py answers the routes, pages.py renders the templates and
uploads.py checks what is sent and shapes what is sent back.
"""

from __future__ import annotations

import dataclasses

from starlette.applications import Starlette
from starlette.formparsers import MultiPartParser
from starlette.types import ASGIApp

from ..settings import Settings
from . import handlers, pages, security
from .gridstatus import GridStatus
from .library import Library
from .uploads import UploadLimits


@dataclasses.dataclass
class Config:
    db_paths: list[str]
    settings: Settings
    token: str | None = None  # --token-file's secret; None on loopback without one


def create_app(config: Config, library: Library | None = None) -> ASGIApp:
    """The application inside its Guard (security.py): every request passes the access rules first.

    What the handlers serve is put on app.state: the config, the Library, the GridStatus, the
    CSRF token, the templates and the upload limits.
    """
    lib = library or Library(config.db_paths, config.settings)
    grid = GridStatus(config.settings, config.db_paths)
    csrf = security.new_csrf()
    w = config.settings.web
    max_photo = w.max_upload_mb * 1024 * 1024
    max_body = w.max_targets * max_photo + 64 * 1024
    MultiPartParser.spool_max_size = max_body  # uploads stay in memory: a part never spills to a temporary file
    app = Starlette(routes=handlers.routes())
    app.state.library, app.state.grid = lib, grid
    app.state.config, app.state.csrf = config, csrf
    app.state.templates = pages.templates(csrf)
    app.state.limits = UploadLimits(max_photo, max_body, w.max_targets)
    return security.Guard(app, config.token, csrf)
