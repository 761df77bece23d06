"""The embeddable player in real browsers: a page on another origin with the two-line snippet.

A real signaling server and `streamer broadcast`; the host page comes from a second aiohttp server
on another 127.0.0.1 port (another origin), so the module scripts and the WebSocket cross origins
as they do on a real site. An init script counts the page's RTCPeerConnections, so the test can
check that destroy() leaves none open.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from browser_helpers import (
    accessibility_violations,
    collect_console,
    focus_order,
    launch_browser,
    luminance_stdev,
    shots_dir,
    streamer_process,
    video_state,
)
from test_browser_swarm import _wait_channel_live

from signaling.app import RunningServer, start_server
from signaling.config import ServerConfig

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "media" / "sample.mp4"

# Exactly what the watch page tells a site to paste, in a page sized by the site's own CSS, plus
# the iframe form; a classic script listens to the element's events before it is defined.
HOST_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>A site</title>
<style>body {{ margin: 16px; font-family: sans-serif; background: #f4f1ea; }}
  streamer-player {{ width: 480px; }}
  iframe {{ border: 0; display: block; margin-top: 12px; }}</style>
</head><body><h1>A site that embeds the stream</h1>
<script type="module" src="{server}/embed.js"></script>
<streamer-player server="{server}" channel="demo" stats></streamer-player>
<iframe src="{server}/embed/demo" width="320" height="180" allow="autoplay"
  title="The stream, embedded"></iframe>
<script>
  window.events = [];
  const el = document.querySelector("streamer-player");
  for (const name of ["state", "stats", "error"]) {{
    el.addEventListener(name, (e) => window.events.push([name, e.detail && e.detail.state]));
  }}
</script></body></html>"""

# Every RTCPeerConnection the page makes, to count those not closed.
COUNT_PEER_CONNECTIONS = """(() => {
  const Native = window.RTCPeerConnection;
  if (!Native) return;
  const made = [];
  window.RTCPeerConnection = class extends Native {
    constructor(...args) { super(...args); made.push(this); }
  };
  window.openPeerConnections = () => made.filter((pc) => pc.signalingState !== "closed").length;
})();"""


@pytest.fixture
async def server() -> AsyncIterator[RunningServer]:
    running = await start_server(ServerConfig(port=0))
    try:
        yield running
    finally:
        await running.close()


@pytest.fixture
async def host_site(server: RunningServer) -> AsyncIterator[str]:
    """The embedding site: another port, so another origin than the signaling server."""

    async def page(_: web.Request) -> web.Response:
        return web.Response(text=HOST_PAGE.format(server=server.url), content_type="text/html")

    app = web.Application()
    app.router.add_get("/", page)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        await runner.cleanup()


@pytest.mark.timeout(120)
async def test_snippet_plays_on_another_origin_and_destroy_closes_every_peer_connection(
    server: RunningServer, host_site: str, engine: tuple[str, str], tmp_path: Path
) -> None:
    engine_name, path = engine
    common = ["--server", server.url, "--channel", "demo"]
    async with (
        streamer_process(
            "broadcast", str(SAMPLE), "--loop", "--key", str(tmp_path / "key"), *common,
            log_path=tmp_path / "broadcast.log",
        ),
        launch_browser(engine_name, path) as browser,
    ):  # fmt: skip
        await _wait_channel_live(server.url, "demo", timeout_s=20)
        page = await browser.new_page(viewport={"width": 800, "height": 600})
        console = collect_console(page)
        await page.add_init_script(COUNT_PEER_CONNECTIONS)
        await page.goto(host_site)
        player = page.locator("streamer-player")  # Playwright's locators pierce the shadow root
        await page.wait_for_function(
            "() => document.querySelector('streamer-player').dataset.state === 'live'",
            timeout=20_000,
        )
        before = await video_state(page, "streamer-player >> video")
        await page.wait_for_function(
            "() => (document.querySelector('streamer-player').stats?.chunks_played ?? 0) >= 3",
            timeout=15_000,
        )
        after = await video_state(page, "streamer-player >> video")
        shot = await player.screenshot(path=str(shots_dir() / f"embed_{engine_name}.png"))
        await page.screenshot(path=str(shots_dir() / f"embed_site_{engine_name}.png"))
        stats = await page.evaluate("() => document.querySelector('streamer-player').stats")
        events = await page.evaluate("() => window.events")
        assert after["error"] is None, console
        assert after["currentTime"] - before["currentTime"] > 1.5, (before, after, console)
        assert after["framesDecoded"] > before["framesDecoded"], (before, after)
        assert luminance_stdev(shot) > 15, "the picture is blank"
        # Sized by the site: its CSS width, the element's own 16:9 height.
        box = await player.bounding_box()
        assert box is not None and round(box["width"]) == 480 and round(box["height"]) == 270, box
        # The same figures as the watch page, and the events a site listens to.
        assert stats["channel"] == "demo" and stats["continuity"] >= 0.9, stats
        assert stats["verifier"] == "webcrypto" and stats["startup_s"] < 5.0, stats
        assert ["state", "live"] in events and any(name == "stats" for name, _ in events), events
        assert not any(name == "error" for name, _ in events), events
        assert await page.is_visible("streamer-player >> text=Tap to unmute")
        assert await page.is_visible("streamer-player >> #st-peer-share")  # the stats overlay
        # The iframe form plays too (its own peer: its frame's <video> advances).
        await page.frame_locator("iframe").locator("streamer-player").wait_for()
        await page.frames[1].wait_for_function(
            "() => document.querySelector('streamer-player').video.currentTime > 1",
            timeout=20_000,
        )

        # pause() holds the picture while the swarm goes on fetching, and "go to live" is offered.
        await page.evaluate("() => document.querySelector('streamer-player').pause()")
        paused_at = (await video_state(page, "streamer-player >> video"))["currentTime"]
        await page.wait_for_function(
            "() => document.querySelector('streamer-player').stats.buffer_s > 3.5", timeout=15_000
        )
        held = await video_state(page, "streamer-player >> video")
        assert held["paused"] and held["currentTime"] == paused_at, held
        go_live = player.get_by_role("button", name="Go to live")
        await go_live.wait_for(state="visible", timeout=2_000)
        assert await player.locator(".state-text").text_content() == "Paused"
        # The keys, with focus in the player: l goes to live, k pauses and plays, m unmutes.
        await player.locator(".player").focus()
        await page.keyboard.press("l")
        await page.wait_for_function(
            """t => { const el = document.querySelector('streamer-player');
                      return !el.video.paused && el.video.currentTime > t + 2
                             && el.stats.buffer_s < 3; }""",
            arg=paused_at,
            timeout=5_000,
        )
        await go_live.wait_for(state="hidden", timeout=2_000)
        await page.keyboard.press("k")
        assert (await video_state(page, "streamer-player >> video"))["paused"]
        await page.keyboard.press("k")
        await page.keyboard.press("m")
        assert not (await video_state(page, "streamer-player >> video"))["paused"]
        muted = await page.evaluate("() => document.querySelector('streamer-player').video.muted")
        assert not muted
        assert not await page.is_visible("streamer-player >> text=Tap to unmute")
        assert await player.get_by_role("button", name="Mute").is_visible()

        # Accessible: no WCAG 2 A/AA violation axe-core finds (the shadow root included), and Tab
        # walks the player's controls in the order they are drawn, each with a name.
        assert await accessibility_violations(page) == []
        order = await focus_order(page, 7)
        # (The unmute hint is gone; picture-in-picture and fullscreen depend on the browser.)
        assert order[0].startswith("Live video ("), order
        assert order[1:4] == ["Pause", "Mute", "Volume"], order
        assert not any(name.startswith("<") for name in order), order

        # destroy() closes every peer connection the element opened.
        assert await page.evaluate("() => window.openPeerConnections()") >= 1
        await page.evaluate("() => document.querySelector('streamer-player').destroy()")
        assert await page.evaluate("() => window.openPeerConnections()") == 0
        assert ["state", "destroyed"] in await page.evaluate("() => window.events")
