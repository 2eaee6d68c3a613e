"""``GET /api/console`` and its assets: the operator web page, static files shipped inside the app package.

The page is plain HTML, CSS and ES modules from ``shared/triggers/console/`` (no build step, nothing from a CDN):
it reads and acts through the operator HTTP API of the same app, so it holds no data and no secret. That is
why the route is anonymous: a browser fetches ``app.js`` and ``style.css`` without the function key the page
was opened with (a key in ``?code=`` is not copied onto sub-resources), and under App Service Authentication
the platform guards the route before it reaches the app anyway. The page takes the key from ``?code=`` or a
password field, keeps it in ``sessionStorage`` and sends it as ``x-functions-key`` on every API call.

Only the file names in :data:`ASSETS` are served (no path from the caller ever touches the file system), each
with its own content type, a strict Content-Security-Policy (no inline script or style, only this origin),
``nosniff``, ``no-referrer`` and an ``ETag`` so a browser revalidates cheaply instead of running stale code.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import azure.functions as func

ASSET_DIR = Path(__file__).with_name("console")

#: Served name (the part after ``/api/console/``; empty for the page itself) → (file, content type).
ASSETS: dict[str, tuple[str, str]] = {
    "": ("index.html", "text/html; charset=utf-8"),
    "app.js": ("app.js", "text/javascript; charset=utf-8"),
    "api.js": ("api.js", "text/javascript; charset=utf-8"),
    "dom.js": ("dom.js", "text/javascript; charset=utf-8"),
    "requests.js": ("requests.js", "text/javascript; charset=utf-8"),
    "ops.js": ("ops.js", "text/javascript; charset=utf-8"),
    "chart.js": ("chart.js", "text/javascript; charset=utf-8"),
    "style.css": ("style.css", "text/css; charset=utf-8"),
}

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}


@dataclass(frozen=True)
class Asset:
    """One file as it is served."""

    body: bytes
    content_type: str
    etag: str


@cache
def load(name: str) -> Asset | None:
    """The asset served as ``name``, read once per process; None for any name not in :data:`ASSETS`."""
    entry = ASSETS.get(name)
    if entry is None:
        return None
    file_name, content_type = entry
    body = (ASSET_DIR / file_name).read_bytes()
    return Asset(body, content_type, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')


def _plain(status: int, text: str, extra: dict[str, str] | None = None) -> func.HttpResponse:
    headers = {**SECURITY_HEADERS, "Cache-Control": "no-store", **(extra or {})}
    return func.HttpResponse(text, status_code=status, headers=headers, mimetype="text/plain")


def _matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    return any(tag.strip().removeprefix("W/") in (etag, "*") for tag in if_none_match.split(","))


def serve(req: func.HttpRequest) -> func.HttpResponse:
    """``GET /api/console`` (the page) and ``GET /api/console/{asset}``: known names only, 404 for the rest."""
    if req.method.upper() not in ("GET", "HEAD"):
        return _plain(405, "Method not allowed.", {"Allow": "GET, HEAD"})
    asset = load(req.route_params.get("asset") or "")
    if asset is None:
        return _plain(404, "Not found.")
    # no-cache: the browser keeps the file but asks every time (a 304 when unchanged), so an updated app never
    # runs with yesterday's page or modules (the names are fixed, so a long max-age would mix versions).
    headers = {**SECURITY_HEADERS, "Cache-Control": "no-cache", "ETag": asset.etag}
    if _matches(req.headers.get("if-none-match"), asset.etag):
        return func.HttpResponse(status_code=304, headers=headers)
    body = b"" if req.method.upper() == "HEAD" else asset.body
    return func.HttpResponse(body, status_code=200, headers={**headers, "Content-Type": asset.content_type})
