"""Peer exchange in real headless Chromium and Firefox: with the signaling server gone, a page that
lost its neighbours opens new links through the one it has left (offer and answer relayed over
the data channels), and every page plays on.

A real `streamer broadcast` and four watch pages of one engine. Once every page plays, the server
is closed for good: any link opened after that went through peer exchange. One page then drops
every link but one (as if those neighbours had left): it is below its target and the server is
gone.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from browser_helpers import launch_browser, page_stats, streamer_process, video_state
from test_browser_swarm import _open_watch_page, _wait_channel_live, _wait_state

from signaling.app import start_server
from signaling.config import ServerConfig

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "media" / "sample.mp4"
PAGES = 4
TARGET = 3


async def _open_links(page: Any) -> list[str]:
    ids: list[str] = await page.evaluate("() => window.streamer.app.rtc.openPeers()")
    return ids


@pytest.mark.timeout(150)
async def test_pages_without_a_server_open_links_through_their_neighbours(
    engine: tuple[str, str], tmp_path: Path
) -> None:
    """Run once per `engine`: four Chromium pages, then four Firefox pages."""
    engine_name, path = engine
    server = await start_server(ServerConfig(port=0))
    try:
        async with (
            streamer_process(
                "broadcast", str(SAMPLE), "--loop", "--key", str(tmp_path / "key"),
                "--server", server.url, "--channel", "demo", log_path=tmp_path / "broadcast.log",
            ),
            launch_browser(engine_name, path) as browser,
        ):  # fmt: skip
            await _wait_channel_live(server.url, "demo", timeout_s=20)
            pages = []
            for _ in range(PAGES):
                page, console = await _open_watch_page(
                    browser, f"{server.url}/watch/demo?neighbours={TARGET}"
                )
                await _wait_state(page, "live", timeout_s=20)
                pages.append((page, console))
            await server.close()
            for page, _ in pages:
                await _wait_state(page, "reconnecting", timeout_s=10)
            ids = {(await page_stats(page))["peer_id"] for page, _ in pages}
            links = [set(await _open_links(page)) for page, _ in pages]
            # The page with the most page neighbours keeps one of them and drops the rest.
            index = max(range(PAGES), key=lambda i: len(links[i] & ids))
            lonely, console = pages[index]
            keep = min(links[index] & ids)
            dropped = sorted(links[index] - {keep})
            assert dropped, links
            await lonely.evaluate(
                "ids => ids.forEach(id => window.streamer.app.rtc.disconnect(id))", dropped
            )
            # Below its target with no server: new links come through `keep` (or through the
            # dropped pages' own neighbours, toward it). Stats refresh every second.
            await lonely.wait_for_function(
                "() => { const s = window.streamer.stats;"
                " return s.neighbour_count >= 2 && s.neighbours_via_exchange >= 1; }",
                timeout=30_000,
            )
            assert (await page_stats(lonely))["links_opened_via_exchange"] >= 1
            # Some page relayed an offer and its answer (`keep`, or a dropped page's neighbour).
            relayed = 0
            for page, _ in pages:
                relayed += await page.evaluate(
                    "() => window.streamer.app.core.stats().signals_relayed"
                )
            assert relayed >= 2, relayed
            before = [await video_state(page) for page, _ in pages]
            await asyncio.sleep(3)
            after = [await video_state(page) for page, _ in pages]
            for was, now in zip(before, after, strict=True):
                assert now["currentTime"] - was["currentTime"] > 2.0, (was, now, console)
    finally:
        await server.close()
