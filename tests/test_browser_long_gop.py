"""Chromium's MSE plays across the switch from copied H.264 to re-encoded H.264 mid-stream.

The switch keeps the copied track's init segment; the encoder's own SPS/PPS travel in band. This is
what a viewer's browser sees when an encoder's keyframes turn far apart after the probe.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from browser_helpers import collect_console, launch_chromium, video_state
from media_helpers import ClipSpec, make_clip
from playwright.async_api import Page
from test_browser_player import FEED_JS, _live_plan, _player_stats, _serve_test_files, _wait_for

from signaling.app import start_server
from signaling.config import ServerConfig

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(90)]


@pytest.fixture(scope="module")
def switched(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`streamer package` of a clip with 1 s GOPs for 2 s, then one 8 s GOP: re-encoded at ~4 s."""
    folder = tmp_path_factory.mktemp("switch")
    clip = make_clip(
        folder / "turns_long.mp4",
        ClipSpec(duration_s=10.0, width=320, height=180, keyframes_s=(0.0, 1.0, 2.0)),
    )
    out = folder / "pkg"
    done = subprocess.run(
        [sys.executable, "-m", "streamer", "package", str(clip), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "re-encoding video from here on" in done.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert not manifest["video_transcoded"]  # copied at the start: the init is the source's
    return out


@pytest.fixture
async def page(chromium_path: str, switched: Path) -> AsyncIterator[tuple[Page, list[str]]]:
    server = await start_server(ServerConfig(port=0))
    try:
        async with launch_chromium(chromium_path) as browser:
            page = await browser.new_page(viewport={"width": 640, "height": 360})
            console = collect_console(page)
            await _serve_test_files(page, server.url, switched)
            await page.goto(f"{server.url}/__test/page.html")
            yield page, console
    finally:
        await server.close()


async def test_chromium_plays_through_the_switch_to_reencoding(
    page: tuple[Page, list[str]],
) -> None:
    tab, console = page
    await tab.evaluate(FEED_JS, {"plan": _live_plan(0, 9, burst=3), "policy": {}})
    await _wait_for(tab, "() => window.player.stats().first_frame_s !== null", 5)
    # Past the switch (~4 s) and well into the re-encoded part.
    await _wait_for(tab, "() => document.getElementById('v').currentTime > 7.5", 14)
    state = await video_state(tab)
    stats = await _player_stats(tab)
    assert state["error"] is None and stats["error"] is None, console
    assert stats["chunks_skipped"] == 0, stats
    assert (state["width"], state["height"]) == (320, 180)
    # Frames kept coming after the switch (30 fps: ~225 by 7.5 s); a decoder that choked on the
    # in-band parameter sets would have stopped near 120.
    assert state["framesDecoded"] >= 200, state
