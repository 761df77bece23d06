"""WebKit's player path: Debian's WebKitGTK (MiniBrowser over WebDriver, tests/webkit_helpers.py).

WebKit here plays H.264/AAC fMP4 through MSE but has no RTCPeerConnection. So: the real watch
page of a live channel must say plainly that this browser cannot be a peer and name the browsers
that can; the project's MSE player (web/static/js/player.js) must play the sample's real chunks
(from `streamer package`); the swarm tests are skipped here with that reason.
"""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from browser_helpers import luminance_stdev, shots_dir, streamer_process
from PIL import Image
from selenium import webdriver
from selenium.webdriver.common.by import By
from test_browser_player import FEED_JS, TEST_PAGE
from webkit_helpers import NO_WEBRTC_REASON, require_webkit, webkit_driver, xvfb_display

from signaling.app import RunningServer, start_server
from signaling.config import ServerConfig

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(90)]

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "media" / "sample.mp4"


@pytest.fixture(scope="module")
def driver() -> Iterator[webdriver.Remote]:
    """One MiniBrowser on a private Xvfb for the whole module (each start costs ~1-2 s)."""
    require_webkit()
    with xvfb_display() as display, webkit_driver(display) as session:
        yield session


def _wait_js(driver: webdriver.Remote, js: str, timeout_s: float) -> Any:
    """Poll `return (js)` until truthy; returns the value, or raises with the last one seen."""
    deadline = time.monotonic() + timeout_s
    value = None
    while time.monotonic() < deadline:
        value = driver.execute_script(f"return ({js});")
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"not true within {timeout_s} s: {js} (last: {value!r})")


def _screenshot_after_paint(driver: webdriver.Remote) -> bytes:
    """The viewport once the latest DOM change is painted (WebKit's snapshot lags it by a frame).

    The whole viewport, cropped later: WebKitGTK 2.50's element screenshot clips the wrong area
    (the top 200 rows of a 640x360 <video> at the page's origin came out black).
    """
    driver.execute_async_script(
        """const done = arguments[arguments.length - 1];
           requestAnimationFrame(() => requestAnimationFrame(() => done(true)));"""
    )
    png: bytes = driver.get_screenshot_as_png()
    return png


def _crop(png: bytes, rect: dict[str, float]) -> bytes:
    """The part of a viewport screenshot inside an element's rect (CSS pixels, scale 1)."""
    box = (rect["x"], rect["y"], rect["x"] + rect["width"], rect["y"] + rect["height"])
    image = Image.open(io.BytesIO(png)).crop(tuple(round(v) for v in box))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


# -- the watch page ------------------------------------------------------------------------------


@pytest.fixture
async def server() -> AsyncIterator[RunningServer]:
    running = await start_server(ServerConfig(port=0))
    yield running
    await running.close()


async def test_watch_page_says_plainly_webkit_cannot_be_a_peer(
    driver: webdriver.Remote, server: RunningServer, tmp_path: Path
) -> None:
    common = ["--server", server.url, "--channel", "live"]
    async with streamer_process(
        "broadcast", str(SAMPLE), "--loop", "--key", str(tmp_path / "key"), *common,
        log_path=tmp_path / "broadcast.log",
    ):  # fmt: skip
        await _wait_live(server.url, "live", timeout_s=20)
        await asyncio.to_thread(driver.get, f"{server.url}/watch/live")
        state = await asyncio.to_thread(
            _wait_js, driver, "document.body.dataset.state === 'unsupported' && 'unsupported'", 10
        )
        title = await asyncio.to_thread(lambda: driver.find_element(By.ID, "overlay-title").text)
        detail = await asyncio.to_thread(lambda: driver.find_element(By.ID, "overlay-detail").text)
        shot = await asyncio.to_thread(_screenshot_after_paint, driver)
        (shots_dir() / "watch_unsupported_webkit.png").write_bytes(shot)
    assert state == "unsupported"
    assert title == "This browser cannot play this stream", title
    # Says why (no WebRTC) and what to use instead, in words a viewer reads.
    assert "WebRTC" in detail and "Chrome" in detail and "Firefox" in detail, detail


async def _wait_live(base_url: str, channel: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            async with session.get(f"{base_url}/api/channels/{channel}") as resp:
                if resp.status == 200:
                    summary = await resp.json()
                    if summary["state"] == "live" and summary["latest_seq"] is not None:
                        return
            await asyncio.sleep(0.2)
    raise AssertionError(f"channel {channel} did not go live within {timeout_s} s")


# -- the MSE player ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def packaged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """init.mp4 + chunks + manifest.json of the bundled sample, from the real `streamer package`."""
    out = tmp_path_factory.mktemp("pkg")
    subprocess.run(
        [sys.executable, "-m", "streamer", "package", str(SAMPLE), "--out", str(out)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return out


@pytest.fixture
async def player_site(packaged: Path) -> AsyncIterator[str]:
    """The test page, the project's ES modules (web/static) and the packaged chunks, on loopback."""

    async def page(_: web.Request) -> web.Response:
        return web.Response(text=TEST_PAGE, content_type="text/html")

    app = web.Application()
    app.router.add_get("/__test/page.html", page)
    app.router.add_static("/__test/media/", packaged)
    app.router.add_static("/static/", ROOT / "web" / "static")
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def _feed(driver: webdriver.Remote, plan: list[list[int]]) -> dict[str, Any]:
    """Run FEED_JS (tests/test_browser_player.py) in the page; its result or {error}."""
    result: dict[str, Any] = driver.execute_async_script(
        f"""const done = arguments[arguments.length - 1];
            ({FEED_JS})(arguments[0]).then(done, (e) => done({{error: String(e)}}));""",
        {"plan": plan, "policy": {}},
    )
    return result


VIDEO_STATE_JS = """(() => {
    const v = document.getElementById('v');
    const q = v.getVideoPlaybackQuality();
    return {currentTime: v.currentTime, readyState: v.readyState, paused: v.paused,
            framesDecoded: q.totalVideoFrames, width: v.videoWidth, height: v.videoHeight,
            error: v.error ? v.error.message || String(v.error.code) : null,
            source: window.ManagedMediaSource && !window.MediaSource ? 'managed' : 'mse'};
})()"""


# [seq, delay_ms] pairs. From the first chunk, one per second, as a live source releases them: the
# player starts where the buffer starts, without a seek (WebKitGTK 2.50 fails a stream seeked while
# its pipeline prerolls from the buffer's start, "Failed to push buffer", about 1 start in 2 with a
# two-chunk backlog from media time 0). Joining mid-stream with a two-chunk backlog: the player
# seeks from 0 to near the newest media before anything prerolls (5/5 starts played, 2026-12-06).
PLANS = {
    "from_first_chunk": [[seq, seq * 1000] for seq in range(0, 13)],
    "joining_mid_stream": [[seq, max(0, seq - 6) * 1000] for seq in range(5, 18)],
}


@pytest.mark.parametrize("plan_name", list(PLANS))
async def test_player_plays_the_stream_in_webkit(
    driver: webdriver.Remote, player_site: str, plan_name: str
) -> None:
    await asyncio.to_thread(driver.get, f"{player_site}/__test/page.html")
    plan = PLANS[plan_name]
    info = await asyncio.to_thread(_feed, driver, plan)
    assert "error" not in info and "avc1" in info["codec"], info
    await asyncio.to_thread(_wait_js, driver, "window.player.stats().first_frame_s !== null", 8)
    first = await asyncio.to_thread(driver.execute_script, f"return {VIDEO_STATE_JS};")
    # Frames advance: wait for 2.5 s of media to play (at 1x that takes 2.5 s of real time).
    start_s = first["currentTime"]
    await asyncio.to_thread(
        _wait_js, driver, f"document.getElementById('v').currentTime > {start_s + 2.5}", 8
    )
    later = await asyncio.to_thread(driver.execute_script, f"return {VIDEO_STATE_JS};")
    stats = await asyncio.to_thread(driver.execute_script, "return window.player.stats();")
    video = await asyncio.to_thread(driver.find_element, By.ID, "v")
    rect = await asyncio.to_thread(lambda: video.rect)
    shot = _crop(await asyncio.to_thread(_screenshot_after_paint, driver), rect)
    (shots_dir() / f"player_live_webkit_{plan_name}.png").write_bytes(shot)
    assert later["error"] is None and stats["error"] is None, (later, stats)
    assert later["framesDecoded"] - first["framesDecoded"] > 30, (first, later)
    assert (later["width"], later["height"]) == (640, 360), later
    assert luminance_stdev(shot) > 15, "the picture is blank"


# -- the swarm -----------------------------------------------------------------------------------


def test_swarm_tests_skip_in_webkit_without_rtcpeerconnection(driver: webdriver.Remote) -> None:
    """The swarm tests need RTCPeerConnection; say exactly why WebKit does not run them."""
    driver.get("about:blank")
    kind = driver.execute_script("return typeof RTCPeerConnection;")
    if kind == "undefined":
        pytest.skip(NO_WEBRTC_REASON)
    pytest.skip(
        f"this WebKit has RTCPeerConnection ({kind}), but the swarm tests drive pages through "
        "Playwright, which cannot drive Debian's WebKit: port them to WebDriver to run them here"
    )
