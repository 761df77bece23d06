"""What other sites need to embed the player: /embed.js, /embed/CHANNEL, CORS, allowed origins."""

from __future__ import annotations

import argparse
from typing import Any

import aiohttp
import pytest
from signaling_helpers import make_client

from signaling.config import add_arguments, config_from_args, parse_origin
from signaling.embedding import frame_ancestors, origin_allowed
from streamer.errors import UserError

SITE = "http://127.0.0.1:9999"


async def test_embed_script_and_modules_are_readable_from_any_site_by_default(
    aiohttp_client: Any,
) -> None:
    client = await make_client(aiohttp_client)
    script = await client.get("/embed.js", headers={"Origin": SITE})
    assert script.status == 200 and "javascript" in script.headers["Content-Type"]
    assert script.headers["Access-Control-Allow-Origin"] == "*"
    assert "/static/js/element.js" in await script.text()
    module = await client.get("/static/js/element.js", headers={"Origin": SITE})
    assert module.status == 200 and module.headers["Access-Control-Allow-Origin"] == "*"
    # The server's pages are not for other sites to read.
    page = await client.get("/watch/live", headers={"Origin": SITE})
    assert "Access-Control-Allow-Origin" not in page.headers


async def test_only_listed_origins_may_embed_when_the_operator_lists_them(
    aiohttp_client: Any,
) -> None:
    client = await make_client(aiohttp_client, allowed_origins=(SITE,))
    listed = await client.get("/static/js/element.js", headers={"Origin": SITE})
    assert listed.headers["Access-Control-Allow-Origin"] == SITE
    other = await client.get("/static/js/element.js", headers={"Origin": "http://evil.test"})
    assert "Access-Control-Allow-Origin" not in other.headers
    # A browser's WebSocket from an unlisted site is refused before the upgrade...
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.ws_connect("/ws", headers={"Origin": "http://evil.test"})
    assert refused.value.status == 403
    # ...while listed sites, the server's own pages and non-browser peers (no Origin) get in.
    for headers in ({"Origin": SITE}, {"Origin": str(client.make_url("")).rstrip("/")}, {}):
        ws = await client.ws_connect("/ws", headers=headers)
        await ws.close()
    frame = await client.get("/embed/live")
    assert frame.headers["Content-Security-Policy"] == f"frame-ancestors 'self' {SITE}"


async def test_iframe_page_holds_only_the_player(aiohttp_client: Any) -> None:
    client = await make_client(aiohttp_client)
    resp = await client.get("/embed/my_show?stats=1")
    html = await resp.text()
    assert resp.status == 200 and resp.headers["Content-Security-Policy"] == "frame-ancestors *"
    assert '<streamer-player channel="my_show" stats>' in html and 'src="/embed.js"' in html
    bad = await client.get("/embed/%3Cb%3E")
    assert bad.status == 404 and "<b>" not in await bad.text()


async def test_watch_page_shows_the_snippet_with_this_servers_address(aiohttp_client: Any) -> None:
    client = await make_client(aiohttp_client)
    html = await (await client.get("/watch/my_show")).text()
    origin = str(client.make_url("")).rstrip("/")
    assert f'&lt;script type="module" src="{origin}/embed.js"&gt;' in html
    assert f'&lt;streamer-player server="{origin}" channel="my_show"' in html
    assert f"{origin}/embed/my_show" in html


def test_allowed_origin_option() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert config_from_args(parser.parse_args([])).allowed_origins == ("*",)
    args = parser.parse_args(["--allowed-origin", "https://a.example/", "--allowed-origin", SITE])
    assert config_from_args(args).allowed_origins == ("https://a.example", SITE)
    with pytest.raises(UserError, match="allowed-origin"):
        parse_origin("https://a.example/path")
    with pytest.raises(UserError, match="allowed-origin"):
        parse_origin("a.example")


def test_origin_rules() -> None:
    own = "http://127.0.0.1:8080"
    assert origin_allowed(own, (SITE,), own) and origin_allowed(SITE, (SITE,), own)
    assert not origin_allowed("http://evil.test", (SITE,), own)
    assert origin_allowed("http://evil.test", ("*",), own)
    assert frame_ancestors(("*",)) == "frame-ancestors *"
