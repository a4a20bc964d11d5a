"""The server-rendered pages: the Jinja environment, its filters and globals, and the render helper.

The templates live in templates/ (package data). Every page gets the served databases and whether
a token guards the site, so the helpers here are all a handler needs to answer with a page.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import jinja2
from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from .. import __version__, video

if TYPE_CHECKING:
    from .app import Config

PALETTE = ("#ff3d7f", "#2f8cff", "#ffb000", "#00c2a8", "#a55cff", "#ff6a00", "#00b3ff", "#e6194b", "#3cb44b")
MATCH_COLOUR = PALETTE[0]  # the matched face's box; the stored copy draws every face in green


def templates(csrf: str) -> Jinja2Templates:
    """The pages' templates, autoescaped and strict, with the globals and filters they use."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("facegrid.web", "templates"), autoescape=True, undefined=jinja2.StrictUndefined
    )
    env.globals.update(csrf=csrf, version=__version__, palette=PALETTE, match_colour=MATCH_COLOUR, clock=video.clock)
    env.filters["pct"] = lambda v: "" if v is None else f"{100 * v:.1f}%"
    env.filters["box_style"] = box_style
    env.filters["when"] = when
    return Jinja2Templates(env=env)


def page(request: Request, name: str, status_code: int = 200, **context: Any) -> Response:
    """Template `name` rendered with `context` plus what every page shows (create_app's app.state)."""
    config: Config = request.app.state.config
    context.setdefault("message", None)
    context["db_paths"] = config.db_paths
    context["authed"] = config.token is not None
    rendering: Jinja2Templates = request.app.state.templates
    return rendering.TemplateResponse(request, name, context, status_code=status_code)


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


def when(t) -> str:
    """A stored Unix time as local date and time; anything else (no time) as nothing."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if isinstance(t, int | float) else ""
