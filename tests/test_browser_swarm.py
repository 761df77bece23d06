"""The watch page as a full peer, in real headless Chromium, against real peers.

A real signaling server (in this process), a real `streamer broadcast` and `streamer relay` (child
processes, aiortc), and pages that join over /ws, open WebRTC data channels, verify chunk
signatures with WebCrypto and play through MSE. Also the page states a viewer sees when there is
nothing to play (waiting, unsupported codec, broadcast ended), driven by a scripted broadcaster.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from browser_helpers import (
    accessibility_violations,
    collect_console,
    focus_order,
    launch_browser,
    launch_chromium,
    luminance_stdev,
    page_stats,
    require_browser,
    shots_dir,
    streamer_process,
    video_state,
)
from playwright.async_api import Browser, Page

from signaling.app import RunningServer, start_server
from signaling.config import ServerConfig

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "media" / "sample.mp4"


@pytest.fixture
async def server() -> AsyncIterator[RunningServer]:
    running = await start_server(ServerConfig(port=0))
    try:
        yield running
    finally:
        await running.close()


async def _wait_channel_live(base_url: str, channel: str, timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            async with session.get(f"{base_url}/api/channels/{channel}") as resp:
                if resp.status == 200:
                    summary: dict[str, Any] = await resp.json()
                    if summary["state"] == "live" and summary["latest_seq"] is not None:
                        return summary
            await asyncio.sleep(0.2)
    raise AssertionError(f"channel {channel} did not go live within {timeout_s} s")


async def _open_watch_page(browser: Browser, url: str) -> tuple[Page, list[str]]:
    context = await browser.new_context(viewport={"width": 1100, "height": 800})
    page = await context.new_page()
    console = collect_console(page)
    await page.goto(url)
    return page, console


async def _wait_state(page: Page, state: str, timeout_s: float) -> None:
    await page.wait_for_function(
        "s => document.body.dataset.state === s", arg=state, timeout=timeout_s * 1000
    )


@pytest.mark.timeout(150)
@pytest.mark.parametrize(
    "engines", [("chromium", "chromium"), ("chromium", "firefox")], ids=["chromium", "mixed"]
)
async def test_pages_and_relay_share_the_stream(
    server: RunningServer, engines: tuple[str, str], tmp_path: Path
) -> None:
    """Two pages, a relay and a broadcaster; "mixed": the second page is Firefox."""
    first_engine, second_engine = engines
    paths = {engine: require_browser(engine) for engine in engines}
    url = f"{server.url}/watch/demo"
    common = ["--server", server.url, "--channel", "demo"]
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(
            streamer_process(
                "broadcast", str(SAMPLE), "--loop", "--key", str(tmp_path / "key"), *common,
                log_path=tmp_path / "broadcast.log",
            )
        )  # fmt: skip
        await stack.enter_async_context(
            streamer_process("relay", *common, log_path=tmp_path / "relay.log")
        )
        browsers = {
            engine: await stack.enter_async_context(launch_browser(engine, path))
            for engine, path in paths.items()
        }
        await _wait_channel_live(server.url, "demo", timeout_s=20)
        first, first_console = await _open_watch_page(browsers[first_engine], url)
        await _wait_state(first, "live", timeout_s=15)
        second, second_console = await _open_watch_page(browsers[second_engine], url)
        await _wait_state(second, "live", timeout_s=15)

        # Both play for real: the clock runs, frames are decoded, the picture is not blank.
        before = await video_state(second)
        await asyncio.sleep(8)
        after = await video_state(second)
        shot = await second.screenshot(
            path=str(shots_dir() / f"swarm_second_page_{second_engine}.png")
        )
        video_shot = await second.locator("video").screenshot()
        stats_1 = await page_stats(first)
        stats_2 = await page_stats(second)
        logs = (first_console, second_console, (tmp_path / "relay.log").read_text())
        assert after["error"] is None, logs
        assert after["currentTime"] - before["currentTime"] > 6.0, (before, after, logs)
        assert after["framesDecoded"] - before["framesDecoded"] > 100, (before, after)
        assert luminance_stdev(video_shot) > 15 and len(shot) > 10_000
        for stats in (stats_1, stats_2):
            assert stats["startup_s"] is not None and stats["startup_s"] < 5.0, stats
            assert stats["continuity"] is not None and stats["continuity"] >= 0.9, stats
            assert stats["lag_s_p50"] is not None and stats["lag_s_p50"] < 5.0, stats
            assert stats["verifier"] == "webcrypto", stats
        # The second page gets bytes from the first page or the relay, not only the broadcaster.
        assert stats_2["bytes_from_peers"] > 0, stats_2
        from_peers = {n["role"]: n["bytesReceived"] for n in stats_2["neighbours"]}
        assert from_peers.get("viewer", 0) + from_peers.get("relay", 0) > 50_000, from_peers
        # Pages are peers: the two pages are neighbours and at least one uploads to the other.
        assert stats_1["bytes_uploaded"] + stats_2["bytes_uploaded"] > 10_000, (stats_1, stats_2)
        if first_engine != second_engine:
            # Two engines' WebRTC stacks trade media both ways (a chunk is ~40 KB; the control
            # messages a link carries in these seconds are a few KB).
            got_1 = _bytes_from(stats_1, stats_2["peer_id"])
            got_2 = _bytes_from(stats_2, stats_1["peer_id"])
            assert got_1 > 30_000 and got_2 > 30_000, (got_1, got_2, stats_1, stats_2)

        # Accessible: no WCAG 2 A/AA violation axe-core finds; Tab reaches the player, then its
        # controls in the order they are drawn, each with a name.
        assert await accessibility_violations(second) == []
        order = await focus_order(second, 6)
        assert order[0] == "▶ streamer" and order[1].startswith("Live video of demo ("), order
        assert order[2:6] == ["Tap to unmute", "Pause", "Unmute", "Volume"], order

        # A neighbour page closes: the second page keeps playing from the others.
        first_id = stats_1["peer_id"]
        assert any(n["peerId"] == first_id for n in stats_2["neighbours"]), stats_2["neighbours"]
        await first.context.close()
        played_before = (await page_stats(second))["chunks_played"]
        before = await video_state(second)
        await asyncio.sleep(7)
        after = await video_state(second)
        stats_2 = await page_stats(second)
        assert after["currentTime"] - before["currentTime"] > 5.0, (before, after, stats_2)
        assert stats_2["chunks_played"] - played_before >= 5, stats_2
        assert all(n["peerId"] != first_id for n in stats_2["neighbours"]), stats_2["neighbours"]
        assert stats_2["state"] == "live", stats_2
        await second.screenshot(
            path=str(shots_dir() / f"swarm_after_neighbour_left_{second_engine}.png")
        )
        # On a phone's screen: nothing wider than the screen, the picture still moves.
        await second.set_viewport_size({"width": 390, "height": 844})
        before = await video_state(second)
        await second.wait_for_function(
            "t => document.querySelector('video').currentTime > t + 1", arg=before["currentTime"]
        )
        await second.screenshot(path=str(shots_dir() / f"swarm_phone_{second_engine}.png"))
        page_width = await second.evaluate("() => document.documentElement.scrollWidth")
        video_box = await second.locator("video").bounding_box()
        assert page_width <= 390 and video_box is not None, (page_width, video_box)
        assert 300 <= video_box["width"] <= 390, video_box


def _bytes_from(stats: dict[str, Any], peer_id: str) -> int:
    """Bytes a page received over its link to `peer_id` (0 when they are not neighbours)."""
    received = [n["bytesReceived"] for n in stats["neighbours"] if n["peerId"] == peer_id]
    return int(received[0]) if received else 0


class ScriptedBroadcaster:
    """A broadcaster that only talks to the signaling server: publish media, end the broadcast."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws

    async def publish(self, mime_type: str, init_segment: bytes) -> None:
        media = {
            "mime_type": mime_type,
            "chunk_seconds": 1.0,
            "init_segment": base64.b64encode(init_segment).decode(),
            "public_key": base64.b64encode(bytes(range(32))).decode(),
            "key_type": "ed25519",
            "bitrate_bps": 1_000_000,
        }
        await self.ws.send_str(json.dumps({"type": "publish", "media": media}))

    async def end(self) -> None:
        await self.ws.send_str(json.dumps({"type": "end"}))


async def _scripted_broadcaster(
    session: aiohttp.ClientSession, base_url: str, channel: str
) -> ScriptedBroadcaster:
    ws = await session.ws_connect(base_url.replace("http", "ws", 1) + "/ws")
    await ws.send_str(
        json.dumps(
            {"type": "join", "v": 1, "channel": channel, "role": "broadcaster", "secret": "s"}
        )
    )
    welcome = json.loads((await ws.receive(timeout=5)).data)
    assert welcome["type"] == "welcome", welcome
    return ScriptedBroadcaster(ws)


@pytest.fixture(scope="module")
def init_segment(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A real init segment (ftyp+moov) of the sample, from the real `streamer package`."""
    out = tmp_path_factory.mktemp("pkg")
    subprocess.run(
        [sys.executable, "-m", "streamer", "package", str(SAMPLE), "--out", str(out)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return (out / "init.mp4").read_bytes()


@pytest.mark.timeout(60)
async def test_page_states_waiting_unsupported_and_ended(
    server: RunningServer, chromium_path: str, init_segment: bytes
) -> None:
    async with aiohttp.ClientSession() as session, launch_chromium(chromium_path) as browser:
        # Nobody broadcasts yet: the page says so and waits.
        page, console = await _open_watch_page(browser, f"{server.url}/watch/odd")
        await _wait_state(page, "waiting", timeout_s=10)
        # A broadcast in a codec this browser cannot play: a clear explanation, no player.
        odd = await _scripted_broadcaster(session, server.url, "odd")
        await odd.publish('video/mp4; codecs="zzzz.42"', b"\x00\x00\x00\x08free")
        await _wait_state(page, "unsupported", timeout_s=10)
        detail = await page.text_content("#overlay-detail")
        assert detail and "zzzz.42" in detail and "H.264" in detail, (detail, console)
        assert await page.is_visible("#overlay")
        await page.screenshot(path=str(shots_dir() / "state_unsupported.png"))

        # A playable broadcast that ends before any chunk: buffering, then "ended".
        page2, console2 = await _open_watch_page(browser, f"{server.url}/watch/short")
        short = await _scripted_broadcaster(session, server.url, "short")
        await short.publish('video/mp4; codecs="avc1.64001e,mp4a.40.2"', init_segment)
        await _wait_state(page2, "buffering", timeout_s=10)
        await short.end()
        await _wait_state(page2, "ended", timeout_s=10)
        title = await page2.text_content("#overlay-title")
        assert title == "The broadcast has ended", (title, console2)
        await page2.screenshot(path=str(shots_dir() / "state_ended.png"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.mark.timeout(120)
async def test_page_keeps_playing_while_the_server_restarts(
    chromium_path: str, tmp_path: Path
) -> None:
    """Signaling carries no video: while it is down the page says "reconnecting" and plays on."""
    port = _free_port()
    server = await start_server(ServerConfig(port=port))
    base = server.url
    try:
        async with (
            streamer_process(
                "broadcast", str(SAMPLE), "--loop", "--key", str(tmp_path / "key"),
                "--server", base, "--channel", "demo", log_path=tmp_path / "broadcast.log",
            ),
            launch_chromium(chromium_path) as browser,
        ):  # fmt: skip
            await _wait_channel_live(base, "demo", timeout_s=20)
            page, console = await _open_watch_page(browser, f"{base}/watch/demo")
            await _wait_state(page, "live", timeout_s=15)
            await server.close()
            await _wait_state(page, "reconnecting", timeout_s=10)
            before = await video_state(page)
            await asyncio.sleep(4)
            after = await video_state(page)
            assert after["currentTime"] - before["currentTime"] > 3.0, (before, after, console)
            server = await start_server(ServerConfig(port=port))
            await _wait_state(page, "live", timeout_s=20)
            stats = await page_stats(page)
            assert stats["signaling_reconnects"] >= 1, stats
            assert stats["continuity"] is not None and stats["continuity"] >= 0.9, stats
    finally:
        await server.close()


@pytest.mark.timeout(90)
async def test_plain_http_lan_page_plays_with_the_pure_js_verifier(
    server: RunningServer, engine: tuple[str, str], tmp_path: Path
) -> None:
    """A page from a LAN name over plain http is no secure context: no crypto.subtle, so chunk
    signatures are checked by the pure-JS Ed25519 (ed25519.js), in each engine."""
    engine_name, path = engine
    lan_url = server.url.replace("127.0.0.1", "lan.test")
    async with (
        streamer_process(
            "broadcast", str(SAMPLE), "--loop", "--key", str(tmp_path / "key"),
            "--server", server.url, "--channel", "demo", log_path=tmp_path / "broadcast.log",
        ),
        launch_browser(engine_name, path, lan_name="lan.test") as browser,
    ):  # fmt: skip
        await _wait_channel_live(server.url, "demo", timeout_s=20)
        page, console = await _open_watch_page(browser, f"{lan_url}/watch/demo")
        assert not await page.evaluate("() => window.isSecureContext || !!crypto.subtle")
        await _wait_state(page, "live", timeout_s=20)
        await page.wait_for_function(
            "() => (window.streamer.stats?.chunks_played ?? 0) >= 3", timeout=15_000
        )
        stats = await page_stats(page)
        video_shot = await page.locator("video").screenshot()
        assert stats["verifier"] == "pure-js", (stats, console)
        assert stats["continuity"] is not None and stats["continuity"] >= 0.9, stats
        assert luminance_stdev(video_shot) > 15, "the picture is blank"
