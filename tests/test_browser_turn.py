"""The watch page through TURN only: real coturn, `serve --turn-secret`, a relay-only broadcaster
process and a headless Chromium page with ?relay_only=1. The page plays, and both ends report the
selected candidate pair as `relay` (the page from getStats(), the broadcaster in --stats-json)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from browser_helpers import collect_console, launch_chromium, page_stats, streamer_process
from playwright.async_api import Page
from turn_helpers import TurnServer, running_turnserver

from signaling.app import RunningServer, start_server
from signaling.config import IceServer, ServerConfig

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SAMPLE = Path(__file__).resolve().parents[1] / "media" / "sample.mp4"


@pytest.fixture
def turn(tmp_path: Path) -> Iterator[TurnServer]:
    with running_turnserver(tmp_path) as server:
        yield server


@pytest.fixture
async def server(turn: TurnServer) -> AsyncIterator[RunningServer]:
    config = ServerConfig(
        port=0,
        ice_servers=(IceServer((turn.url,), secret_auth=True),),
        turn_secret=turn.secret,
    )
    running = await start_server(config)
    try:
        yield running
    finally:
        await running.close()


async def _wait_live(base_url: str, channel: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            async with session.get(f"{base_url}/api/channels/{channel}") as resp:
                if resp.status == 200 and (await resp.json())["latest_seq"] is not None:
                    return
            await asyncio.sleep(0.2)
    raise AssertionError(f"channel {channel} did not go live within {timeout_s} s")


async def _measured_paths(page: Page, timeout_s: float) -> dict[str, Any]:
    """The page's stats once every open neighbour has a path with a measured RTT."""
    deadline = time.monotonic() + timeout_s
    while True:
        stats = await page_stats(page)
        paths = stats.get("neighbour_paths") or {}
        if paths and all(p["rtt_ms"] is not None for p in paths.values()):
            return stats
        if time.monotonic() > deadline:
            raise AssertionError(f"no measured ICE path within {timeout_s} s: {stats}")
        await asyncio.sleep(0.25)


@pytest.mark.timeout(90)
async def test_page_plays_through_turn_only(
    server: RunningServer, turn: TurnServer, chromium_path: str, tmp_path: Path
) -> None:
    stats_path = tmp_path / "broadcast.json"
    async with (
        streamer_process(
            "broadcast", str(SAMPLE), "--loop", "--key", str(tmp_path / "key"),
            "--server", server.url, "--channel", "turn", "--ice-relay-only",
            "--stats-json", str(stats_path), log_path=tmp_path / "broadcast.log",
        ),
        launch_chromium(chromium_path) as browser,
    ):  # fmt: skip
        await _wait_live(server.url, "turn", timeout_s=20)
        page = await browser.new_page()
        console = collect_console(page)
        response = await page.goto(f"{server.url}/watch/turn?relay_only=1")
        assert response is not None and turn.secret not in await response.text()
        try:
            await page.wait_for_function(
                "() => document.body.dataset.state === 'live'", timeout=20_000
            )
        except Exception as error:
            logs = (console, (tmp_path / "broadcast.log").read_text(), turn.log()[-3000:])
            raise AssertionError(logs) from error
        stats = await _measured_paths(page, timeout_s=10)
        await page.close()

    paths = stats["neighbour_paths"]
    for path in paths.values():
        assert path["pair_type"] == "relay" and path["local_candidate_type"] == "relay", paths
        assert path["rtt_ms"] >= 0
        # The page's setup, step by step (the browser may report the connection connected, the
        # "dtls" step, just after the channel opened: only the order of the others is sure).
        steps = path["setup_ms"]
        assert {"described", "answered", "ice", "dtls", "open"} <= set(steps), path
        assert 0 <= steps["described"] <= steps["open"] and steps["answered"] <= steps["open"], path
    assert set(stats["ice_pair_types"]) == {"relay"}, stats["ice_pair_types"]
    assert stats["chunks_played"] >= 1, stats
    [row] = [n for n in stats["neighbours"] if n["peerId"] in paths]
    assert row["path"]["pair_type"] == "relay"
    broadcast = json.loads(stats_path.read_text())
    assert broadcast["ice_pair_types"] == {"relay": 1}, broadcast
