"""The MSE player (web/static/js/player.js) in real headless Chromium, fed real fMP4 chunks.

The chunks come from `streamer package` on the bundled sample; the page and the player module are
served by the real signaling server; a test-only route (Playwright's page.route) serves the test
page and the packaged files. No swarm here: this isolates MSE playback (start, live pacing, a chunk
that never comes, catching up when far behind, trimming) from networking.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from browser_helpers import (
    collect_console,
    launch_browser,
    luminance_stdev,
    shots_dir,
    video_state,
)
from media_helpers import ClipSpec, make_clip
from playwright.async_api import Page, Route

from signaling.app import start_server
from signaling.config import ServerConfig

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(90)]

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "media" / "sample.mp4"

TEST_PAGE = """<!doctype html><html><head><meta charset="utf-8"></head>
<body style="margin:0;background:#000">
<video id="v" muted playsinline style="width:640px;height:360px;display:block"></video>
</body></html>"""

# Runs in the page: open the player, then deliver chunks per `plan` ([seq, delay_ms] pairs,
# delays from the start), with the source's release time set as a live source would.
FEED_JS = """
async ({plan, policy, releaseAtDelivery = false}) => {
  const {MsePlayer} = await import('/static/js/player.js');
  const m = await (await fetch('/__test/media/manifest.json')).json();
  const get = async (f) => new Uint8Array(await (await fetch('/__test/media/' + f)).arrayBuffer());
  const init = await get(m.init);
  const bySeq = new Map(m.chunks.map((c) => [c.seq, c]));
  const data = new Map();
  for (const [seq] of plan) data.set(seq, await get(bySeq.get(seq).file));
  const video = document.getElementById('v');
  const player = new MsePlayer(video, {policy});
  window.player = player;
  await player.open(m.codec, init);
  const t0 = performance.now();
  const first = plan[0][0];
  const now = () => (performance.timeOrigin + performance.now()) / 1000;
  const released0 = now();
  for (const [seq, delayMs] of plan) {
    setTimeout(() => {
      const c = bySeq.get(seq);
      // As if chunk `first` had just been released when we joined, one chunk per second after
      // (or, releaseAtDelivery, each chunk released as it is delivered: a live encoder's).
      const releaseS = releaseAtDelivery
        ? released0 + delayMs / 1000
        : released0 + (seq - first) * c.duration_s;
      player.pushChunk(seq, data.get(seq), {startS: c.start_s, durationS: c.duration_s, releaseS});
    }, Math.max(0, delayMs - (performance.now() - t0)));
  }
  window.ticker = setInterval(() => player.tick(), 250);
  return {codec: m.codec, chunks: m.chunks.length};
}
"""


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


async def _serve_test_files(page: Page, base_url: str, folder: Path) -> None:
    async def handle(route: Route) -> None:
        name = route.request.url.split("/__test/", 1)[1]
        if name == "page.html":
            await route.fulfill(body=TEST_PAGE, content_type="text/html")
            return
        path = (folder / name.removeprefix("media/")).resolve()
        if folder not in path.parents or not path.is_file():
            await route.fulfill(status=404, body="no such file")
            return
        await route.fulfill(body=path.read_bytes(), content_type="application/octet-stream")

    await page.route(f"{base_url}/__test/**", handle)


@pytest.fixture(scope="module")
def packaged_scene_cuts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same, of a clip with scene-cut GOPs of 1-4 s, copied as they are (chunks of 1-4 s)."""
    work = tmp_path_factory.mktemp("cuts")
    clip = make_clip(
        work / "cuts.mp4",
        ClipSpec(duration_s=14.0, width=320, height=180, keyframes_s=SCENE_CUTS_S),
    )
    out = work / "pkg"
    command = [sys.executable, "-m", "streamer", "package", str(clip), "--out", str(out)]
    subprocess.run([*command, "--gop-limit", "5"], check=True, capture_output=True, timeout=60)
    return out


SCENE_CUTS_S = (0.0, 1.0, 3.0, 6.0, 7.0, 11.0, 12.0)


async def _open_page(
    engine: str, browser_path: str, folder: Path
) -> AsyncIterator[tuple[Page, list[str]]]:
    server = await start_server(ServerConfig(port=0))
    try:
        async with launch_browser(engine, browser_path) as browser:
            page = await browser.new_page(viewport={"width": 640, "height": 360})
            console = collect_console(page)
            await _serve_test_files(page, server.url, folder)
            await page.goto(f"{server.url}/__test/page.html")
            yield page, console
    finally:
        await server.close()


@pytest.fixture
async def player_page(chromium_path: str, packaged: Path) -> AsyncIterator[tuple[Page, list[str]]]:
    async for opened in _open_page("chromium", chromium_path, packaged):
        yield opened


@pytest.fixture
async def player_page_each_engine(
    engine: tuple[str, str], packaged: Path
) -> AsyncIterator[tuple[Page, list[str]]]:
    """The same page in Chromium, then in Firefox."""
    async for opened in _open_page(*engine, packaged):
        yield opened


@pytest.fixture
async def scene_cuts_page(
    chromium_path: str, packaged_scene_cuts: Path
) -> AsyncIterator[tuple[Page, list[str]]]:
    async for opened in _open_page("chromium", chromium_path, packaged_scene_cuts):
        yield opened


async def _player_stats(page: Page) -> dict[str, Any]:
    stats: dict[str, Any] = await page.evaluate("() => window.player.stats()")
    return stats


async def _wait_for(page: Page, js: str, timeout_s: float) -> None:
    await page.wait_for_function(js, timeout=timeout_s * 1000, polling=100)


def _live_plan(first: int, last: int, *, burst: int = 1, skip: tuple[int, ...] = ()) -> list[Any]:
    """Chunks first..last: `burst` at once (a late joiner's backlog), then one per second."""
    plan = []
    for seq in range(first, last + 1):
        if seq in skip:
            continue
        plan.append([seq, max(0, seq - first - burst + 1) * 1000])
    return plan


async def test_player_plays_live_chunks(
    player_page_each_engine: tuple[Page, list[str]], engine: tuple[str, str]
) -> None:
    page, console = player_page_each_engine
    info = await page.evaluate(FEED_JS, {"plan": _live_plan(0, 12, burst=2), "policy": {}})
    assert info["chunks"] >= 12 and "avc1" in info["codec"]
    await _wait_for(page, "() => window.player.stats().first_frame_s !== null", 5)
    first = await video_state(page)
    await asyncio.sleep(4)
    later = await video_state(page)
    stats = await _player_stats(page)
    shot = await page.locator("video").screenshot(
        path=str(shots_dir() / f"player_live_{engine[0]}.png")
    )
    assert later["error"] is None and stats["error"] is None, console
    # Real time passes at 1x: ~4 s of media played, no long stall.
    assert later["currentTime"] - first["currentTime"] > 3.0, (first, later, stats)
    assert later["framesDecoded"] - first["framesDecoded"] > 60, (first, later)
    assert (later["width"], later["height"]) == (640, 360)
    assert luminance_stdev(shot) > 15, "the picture is blank"
    assert stats["first_frame_s"] < 2.0, stats
    # Lag of the picture behind the (simulated) source release: bounded and sensible.
    assert stats["video_lag_s"] is not None and -1.0 < stats["video_lag_s"] < 4.0, stats
    assert stats["chunks_skipped"] == 0 and stats["stalls"] <= 1, stats


async def test_player_keeps_the_swarm_core_lag(player_page: tuple[Page, list[str]]) -> None:
    """Given the lag the core plays at, the picture slows down to it (it would otherwise stall
    on chunks that come in time for the core but late for it), or speeds up when behind it."""
    page, console = player_page
    await page.evaluate(FEED_JS, {"plan": _live_plan(0, 16, burst=3), "policy": {}})
    await _wait_for(page, "() => window.player.stats().video_lag_s !== null", 5)
    policy = await page.evaluate("() => window.player.policy")
    start_lag_s = (await _player_stats(page))["video_lag_s"]
    # The core plays 1 s further behind the source than the picture shows: slower, and the
    # picture's lag grows towards the core's.
    await page.evaluate("(lag) => window.player.followCoreLag(lag)", start_lag_s + 1.0)
    await _wait_for(page, f"() => window.player.video.playbackRate === {policy['slowDownRate']}", 2)
    await asyncio.sleep(3)
    slowed = await _player_stats(page)
    assert slowed["video_lag_s"] - start_lag_s > 0.2, (start_lag_s, slowed)
    # Ahead of where it aims (the core's lag plus the margin): not behind live.
    assert slowed["behind_core_s"] < 0, slowed
    # The core 2 s ahead of the picture: faster.
    await page.evaluate("(lag) => window.player.followCoreLag(lag)", slowed["video_lag_s"] - 2.0)
    await _wait_for(page, f"() => window.player.video.playbackRate === {policy['catchUpRate']}", 2)
    stats = await _player_stats(page)
    assert stats["error"] is None and stats["chunks_skipped"] == 0, (stats, console)


async def test_player_skips_a_chunk_that_never_comes(player_page: tuple[Page, list[str]]) -> None:
    page, console = player_page
    plan = _live_plan(0, 9, burst=2, skip=(3,))
    await page.evaluate(FEED_JS, {"plan": plan, "policy": {}})
    await _wait_for(page, "() => document.getElementById('v').currentTime > 5.5", 12)
    stats = await _player_stats(page)
    assert stats["error"] is None, console
    assert stats["chunks_skipped"] == 1, stats
    ranges = await page.evaluate("() => window.player.ranges()")
    # The hole where chunk 3 would be is still a hole: playback jumped over it.
    assert any(start >= 3.9 for start, _ in ranges) or ranges[0][0] >= 3.9, ranges


async def test_player_catches_up_when_far_behind_live(player_page: tuple[Page, list[str]]) -> None:
    page, console = player_page
    # Start with 2 chunks, then 10 arrive at once 1.5 s later: we are ~10 s behind the live edge.
    plan = [[0, 0], [1, 0]] + [[seq, 1500] for seq in range(2, 12)]
    await page.evaluate(FEED_JS, {"plan": plan, "policy": {}})
    await _wait_for(page, "() => window.player.stats().chunks_appended >= 12", 6)
    await _wait_for(page, "() => document.getElementById('v').currentTime > 9", 3)
    stats = await _player_stats(page)
    assert stats["error"] is None, console
    assert stats["seeks_for_lag"] >= 1, stats
    assert stats["buffer_s"] < 3.5, stats


async def test_player_trims_old_media(player_page: tuple[Page, list[str]]) -> None:
    page, console = player_page
    policy = {"keepBehindS": 2.0, "trimMinS": 1.0}
    await page.evaluate(FEED_JS, {"plan": _live_plan(0, 10, burst=2), "policy": policy})
    await _wait_for(page, "() => document.getElementById('v').currentTime > 5", 10)
    await asyncio.sleep(0.6)
    ranges = await page.evaluate("() => window.player.ranges()")
    current = (await video_state(page))["currentTime"]
    assert ranges and ranges[0][0] > 1.0, (ranges, current, console)
    assert current - ranges[0][0] < 2.0 + 1.5, (ranges, current)


async def test_player_plays_chunks_of_any_length_without_seeking_or_skipping(
    scene_cuts_page: tuple[Page, list[str]], packaged_scene_cuts: Path
) -> None:
    """Chunks of 1-4 s, each delivered when its last frame is shot (as a live encoder's GOPs
    come): nothing is seeked over or skipped, and the picture reaches the last chunk."""
    page, console = scene_cuts_page
    manifest = json.loads((packaged_scene_cuts / "manifest.json").read_text())
    chunks = manifest["chunks"]
    durations = sorted({round(c["duration_s"]) for c in chunks})
    assert durations[0] == 1 and durations[-1] == 4, durations
    first_start_s = chunks[0]["start_s"]
    plan = [
        [c["seq"], round(1000 * (c["start_s"] - first_start_s + c["duration_s"]))] for c in chunks
    ]
    await page.evaluate(FEED_JS, {"plan": plan, "policy": {}, "releaseAtDelivery": True})
    end_s = chunks[-1]["start_s"] + chunks[-1]["duration_s"]
    await _wait_for(page, f"() => document.getElementById('v').currentTime > {end_s - 1.0}", 25)
    stats = await _player_stats(page)
    shot = await page.locator("video").screenshot(path=str(shots_dir() / "player_scene_cuts.png"))
    assert stats["error"] is None, console
    assert stats["chunks_appended"] == len(chunks), stats
    assert stats["chunks_skipped"] == 0 and stats["seeks_for_lag"] == 0, stats
    assert luminance_stdev(shot) > 15, "the picture is blank"
