"""The web dashboard: a static single-page app at /ui/, read from the installed package.

The files hold no data (every figure comes from the REST API with the user's token), so they
need no credential. They are served with a strict Content-Security-Policy: scripts, styles and
connections from this origin only, no inline code, no framing.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from fl_shared.wire import ErrorBody

PACKAGE = "fl_coordinator.dashboard"

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
# What the dashboard ships, by suffix; any other file is not served.
CONTENT_TYPES: dict[str, str] = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".json": "application/json",
    ".png": "image/png",
    ".ico": "image/x-icon",
}
# One path segment of an asset: no dot files, no "..", no separators or odd characters.
_SEGMENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_MAX_DEPTH = 4

router = APIRouter(include_in_schema=False)


@dataclass(frozen=True)
class StaticFile:
    """One file of the dashboard, read once."""

    body: bytes
    content_type: str
    etag: str


def _resolve(parts: tuple[str, ...]) -> Traversable | None:
    node: Traversable = resources.files(PACKAGE)
    for part in parts:
        node = node.joinpath(part)
    return node if node.is_file() else None


def _load(parts: tuple[str, ...]) -> StaticFile | None:
    """The file at ``parts`` inside the dashboard package, or None.

    Read on every request (a few small files, fetched once per page load), so an edited file
    shows at the next reload.
    """
    if not parts or len(parts) > _MAX_DEPTH:
        return None
    if any(not _SEGMENT.fullmatch(p) or ".." in p for p in parts):
        return None
    suffix = "." + parts[-1].rsplit(".", 1)[-1] if "." in parts[-1] else ""
    content_type = CONTENT_TYPES.get(suffix)
    if content_type is None:
        return None
    node = _resolve(parts)
    if node is None:
        return None
    body = node.read_bytes()
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    return StaticFile(body=body, content_type=content_type, etag=etag)


def _not_found(what: str) -> JSONResponse:
    body = ErrorBody(error="not_found", detail=f"no dashboard file {what!r}")
    return JSONResponse(body.model_dump(), status_code=404, headers=SECURITY_HEADERS)


def _serve(request: Request, parts: tuple[str, ...]) -> Response:
    found = _load(parts)
    if found is None:
        return _not_found("/".join(parts))
    # Not fingerprinted: the browser revalidates every time and gets a 304 when unchanged.
    headers = {**SECURITY_HEADERS, "Cache-Control": "no-cache", "ETag": found.etag}
    if found.etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    return Response(content=found.body, media_type=found.content_type, headers=headers)


@router.api_route("/", methods=["GET", "HEAD"])
def root() -> RedirectResponse:
    """The dashboard is the coordinator's front page."""
    return RedirectResponse("/ui/", status_code=307)


@router.api_route("/ui", methods=["GET", "HEAD"])
def ui_without_slash() -> RedirectResponse:
    """/ui -> /ui/, so the page's relative asset links resolve."""
    return RedirectResponse("/ui/", status_code=307)


@router.api_route("/ui/", methods=["GET", "HEAD"])
def ui_index(request: Request) -> Response:
    """The single page; every view is a #/route inside it."""
    return _serve(request, ("index.html",))


@router.api_route("/ui/assets/{path:path}", methods=["GET", "HEAD"])
def ui_asset(request: Request, path: str) -> Response:
    """A script, style sheet or icon of the dashboard."""
    return _serve(request, ("assets", *path.split("/")))
