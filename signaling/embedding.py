"""What lets other sites embed the player: /embed.js, the /embed/CHANNEL page, and origins.

A site includes `<script type="module" src="https://HOST/embed.js">`; module scripts, and the
modules they import, are fetched with CORS, so /embed.js, /static/ and /api/ answer with
Access-Control-Allow-Origin for the allowed origins. The player then opens /ws from the site's
origin: a browser's WebSocket sends that Origin, and one not allowed is refused (403) before the
upgrade. The server's own pages are always allowed; clients that send no Origin (peers, relays,
tools) are not browsers and are not checked. `/embed/CHANNEL` is the player alone, for an
<iframe>; `Content-Security-Policy: frame-ancestors` lets only the allowed origins frame it.

Default: any origin ("*"): the stream is public, and a channel is embeddable unless the operator
lists the sites that may embed it (`streamer serve --allowed-origin https://example.org`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from signaling.state import STATE
from signaling_wire import CHANNEL_NAME_RE

ANY_ORIGIN = "*"
#: Paths a page on another origin may read (scripts, styles, the public JSON).
_SHARED_PREFIXES = ("/embed.js", "/static/", "/api/")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def setup(app: web.Application) -> None:
    """Add /embed.js, /embed/{channel} and the origin middleware (before the app starts)."""
    app.router.add_get("/embed.js", embed_script)
    app.router.add_get("/embed/{channel}", embed_page)
    app.middlewares.append(origin_middleware)


def origin_allowed(origin: str, allowed: tuple[str, ...], own_origin: str) -> bool:
    """Whether a page from `origin` may use this server (its own pages always may)."""
    return origin == own_origin or ANY_ORIGIN in allowed or origin in allowed


def _own_origin(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


@web.middleware
async def origin_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    origin = request.headers.get("Origin")
    allowed = request.app[STATE].config.allowed_origins
    permitted = origin is None or origin_allowed(origin, allowed, _own_origin(request))
    if request.path == "/ws" and not permitted:
        raise web.HTTPForbidden(text=f"origin {origin} may not use this server")
    response = await handler(request)
    if origin is not None and permitted and request.path.startswith(_SHARED_PREFIXES):
        response.headers["Access-Control-Allow-Origin"] = (
            ANY_ORIGIN if ANY_ORIGIN in allowed else origin
        )
        response.headers["Vary"] = "Origin"
    return response


async def embed_script(request: web.Request) -> web.StreamResponse:
    path = request.app[STATE].config.web_dir / "static" / "embed.js"
    return web.FileResponse(path, headers={"Content-Type": "text/javascript; charset=utf-8"})


def frame_ancestors(allowed: tuple[str, ...]) -> str:
    """The CSP directive that lets the allowed origins put /embed/CHANNEL in an iframe."""
    if ANY_ORIGIN in allowed:
        return "frame-ancestors *"
    return "frame-ancestors 'self' " + " ".join(allowed)


async def embed_page(request: web.Request) -> web.Response:
    # Imported here: pages imports this module for its setup.
    from signaling.pages import render

    name = request.match_info["channel"]
    if not CHANNEL_NAME_RE.match(name):
        return render(request, "not_found.html", status=404, what="channel", name=name)
    response = render(request, "embed.html", channel=name, stats=request.query.get("stats") == "1")
    allowed = request.app[STATE].config.allowed_origins
    response.headers["Content-Security-Policy"] = frame_ancestors(allowed)
    return response
