"""HTTP side: the channel list and watch pages (jinja2, autoescaped), /api JSON, /metrics, /healthz.

The pages show only public facts (Channel.summary); a channel name from the URL is checked against
the same rule as in `join` before it reaches a template or a lookup.
"""

from __future__ import annotations

import json
import time
from typing import Any

import jinja2
from aiohttp import web

from signaling import embedding
from signaling.metrics import CONTENT_TYPE
from signaling.state import STATE, ServerState
from signaling_wire import CHANNEL_NAME_RE, PROTOCOL_VERSION

_ENV = web.AppKey("signaling_jinja", jinja2.Environment)


def setup(app: web.Application) -> None:
    """Add the page routes and the /static/ folder to `app` (after app[STATE] is set)."""
    web_dir = app[STATE].config.web_dir
    app[_ENV] = jinja2.Environment(
        loader=jinja2.FileSystemLoader(web_dir / "templates"),
        autoescape=jinja2.select_autoescape(["html", "xml"], default=True),
    )
    app[_ENV].filters["duration"] = format_duration
    app[_ENV].filters["rate"] = format_rate
    app.router.add_get("/", index)
    app.router.add_get("/watch/{channel}", watch)
    app.router.add_get("/api/channels", api_channels)
    app.router.add_get("/api/channels/{channel}", api_channel)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    embedding.setup(app)
    static_dir = web_dir / "static"
    if static_dir.is_dir():
        app.router.add_static("/static/", static_dir, follow_symlinks=False)


def _state(request: web.Request) -> ServerState:
    return request.app[STATE]


def render(request: web.Request, template: str, status: int = 200, **context: Any) -> web.Response:
    html = request.app[_ENV].get_template(template).render(**context)
    return web.Response(text=html, status=status, content_type="text/html")


def format_duration(seconds: float | None) -> str:
    """`3725` -> `1h 02m`: short and readable on a phone."""
    if seconds is None:
        return "-"
    total = int(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def format_rate(rate_bps: float | None) -> str:
    if rate_bps is None:
        return "-"
    if rate_bps >= 1_000_000:
        return f"{rate_bps / 1_000_000:.1f} Mbit/s"
    return f"{rate_bps / 1000:.0f} kbit/s"


async def _summaries(state: ServerState) -> list[dict[str, Any]]:
    channels = await state.directory.channel_summaries(time.monotonic())
    order = {"live": 0, "waiting": 1, "ended": 2}
    channels.sort(key=lambda c: (order[c["state"]], -c["peers"], c["name"]))
    return channels


async def index(request: web.Request) -> web.Response:
    return render(request, "index.html", channels=await _summaries(_state(request)))


async def watch(request: web.Request) -> web.Response:
    name = request.match_info["channel"]
    if not CHANNEL_NAME_RE.match(name):
        return render(request, "not_found.html", status=404, what="channel", name=name)
    state = _state(request)
    client_config = {
        "channel": name,
        "ws_path": "/ws",
        "protocol_version": PROTOCOL_VERSION,
        "ice_servers": state.config.ice_servers_json(),
        # Other servers of the cluster the page fails over to (it tries its own origin first).
        "failover_urls": list(state.config.failover_urls),
    }
    summary = await state.directory.channel_summary(name, time.monotonic())
    return render(
        request,
        "watch.html",
        channel=name,
        summary=summary,
        client_config=client_config,
        origin=f"{request.scheme}://{request.host}",  # for the embed snippet
    )


async def api_channels(request: web.Request) -> web.Response:
    return web.json_response({"channels": await _summaries(_state(request))})


async def api_channel(request: web.Request) -> web.Response:
    name = request.match_info["channel"]
    summary = None
    if CHANNEL_NAME_RE.match(name):
        summary = await _state(request).directory.channel_summary(name, time.monotonic())
    if summary is None:
        return web.json_response({"error": "no such channel"}, status=404)
    return web.json_response(summary)


async def metrics(request: web.Request) -> web.Response:
    state = _state(request)
    totals = await state.directory.totals()
    body = state.metrics.render(totals.peers_by_role, totals.channels, len(state.connections))
    return web.Response(
        body=body,
        headers={"Content-Type": CONTENT_TYPE, "X-Content-Type-Options": "nosniff"},
    )


async def healthz(request: web.Request) -> web.Response:
    """This process's own figures (a load balancer's health check asks each process)."""
    state = _state(request)
    body = {
        "status": "ok",
        "uptime_s": round(time.monotonic() - state.started_at_s, 1),
        "connections": len(state.connections),
        "channels": len(state.registry.channels),
    }
    return web.Response(text=json.dumps(body), content_type="application/json")
