"""The watch page fails over between the servers of a cluster, in real headless Chromium.

Two signaling servers share a real redis-server; the page loads from A, which lists B in its
client config (`--failover-url`); a real `streamer broadcast` knows both (`--server` twice).
When A goes away the page joins B under the same peer id and plays on.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from browser_helpers import launch_chromium, page_stats, streamer_process, video_state
from redis_helpers import RedisServer
from test_browser_swarm import _open_watch_page, _wait_channel_live, _wait_state

from signaling.app import start_server
from signaling.config import ServerConfig

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "media" / "sample.mp4"


@pytest.mark.timeout(120)
async def test_page_fails_over_to_the_next_server_with_its_peer_id(
    chromium_path: str, tmp_path: Path, redis_server: RedisServer
) -> None:
    cluster = {"redis_url": redis_server.url, "cluster_heartbeat_s": 0.2}
    server_b = await start_server(ServerConfig(port=0, **cluster))
    server_a = await start_server(ServerConfig(port=0, failover_urls=(server_b.url,), **cluster))
    try:
        async with (
            streamer_process(
                "broadcast", str(SAMPLE), "--loop", "--key", str(tmp_path / "key"),
                "--server", server_a.url, "--server", server_b.url, "--channel", "demo",
                log_path=tmp_path / "broadcast.log",
            ),
            launch_chromium(chromium_path) as browser,
        ):  # fmt: skip
            await _wait_channel_live(server_a.url, "demo", timeout_s=20)
            page, console = await _open_watch_page(browser, f"{server_a.url}/watch/demo")
            await _wait_state(page, "live", timeout_s=20)
            before = await page_stats(page)
            await server_a.close()
            # Back on B (the only other server) without the user doing anything.
            await page.wait_for_function(
                "id => window.streamer?.stats?.signaling_reconnects >= 1"
                " && document.body.dataset.state === 'live'",
                arg=before["peer_id"],
                timeout=15_000,
            )
            played = await video_state(page)
            await asyncio.sleep(3)
            after = await page_stats(page)
            still = await video_state(page)
            assert after["peer_id"] == before["peer_id"], (before["peer_id"], after["peer_id"])
            assert still["currentTime"] - played["currentTime"] > 2.0, (played, still, console)
            assert after["continuity"] is not None and after["continuity"] >= 0.9, after
            summary = await _wait_channel_live(server_b.url, "demo", timeout_s=5)
            assert summary["viewers"] == 1, summary
    finally:
        await server_a.close()
        await server_b.close()
