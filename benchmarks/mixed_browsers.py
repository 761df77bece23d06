"""A swarm of Chromium and Firefox pages: does every page play, and do the engines trade media?

    .venv/bin/python benchmarks/mixed_browsers.py [--chromium 2] [--firefox 2] [--relays 1]
        [--duration 60] [--json FILE]

A real signaling server (in this process), `streamer broadcast` of the bundled sample and
`streamer relay` (child processes), and watch pages in Debian's chromium and firefox-esr (one
browser process per engine, a context per page). After --duration s it prints each page's
continuity, lag, share from peers and the bytes it received from pages of the other engine.
Figures go to docs/BENCHMARKS.md ("Browsers").
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from browser_helpers import BROWSER_PATHS, launch_browser, streamer_process  # noqa: E402
from playwright.async_api import Page  # noqa: E402

from signaling.app import start_server  # noqa: E402
from signaling.config import ServerConfig  # noqa: E402

SAMPLE = ROOT / "media" / "sample.mp4"


async def wait_live(page: Page, timeout_s: float) -> None:
    await page.wait_for_function(
        "() => document.body.dataset.state === 'live'", timeout=timeout_s * 1000
    )


def summarize(stats: dict[str, Any], engine: str, engine_of: dict[str, str]) -> dict[str, Any]:
    """One page's figures; bytes received per engine of the neighbouring page."""
    from_engine: dict[str, int] = {}
    for n in stats.get("neighbours", []):
        other = engine_of.get(n["peerId"])
        if other is not None:
            from_engine[other] = from_engine.get(other, 0) + int(n["bytesReceived"])
    other_engines = {e: b for e, b in from_engine.items() if e != engine}
    return {
        "engine": engine,
        "peer_id": stats.get("peer_id"),
        "continuity": stats.get("continuity"),
        "lag_s_p50": stats.get("lag_s_p50"),
        "lag_s_p95": stats.get("lag_s_p95"),
        "startup_s": stats.get("startup_s"),
        "peer_share": stats.get("peer_share"),
        "chunks_played": stats.get("chunks_played"),
        "bytes_from_pages": from_engine,
        "bytes_from_other_engine": sum(other_engines.values()),
    }


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    server = await start_server(ServerConfig(port=0))
    work = Path(tempfile.mkdtemp(prefix="mixed-browsers-"))
    common = ["--server", server.url, "--channel", "mixed"]
    counts = {"chromium": args.chromium, "firefox": args.firefox}
    try:
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(
                streamer_process(
                    "broadcast", str(SAMPLE), "--loop", "--key", str(work / "key"), *common,
                    log_path=work / "broadcast.log",
                )
            )  # fmt: skip
            for i in range(args.relays):
                await stack.enter_async_context(
                    streamer_process("relay", *common, log_path=work / f"relay{i}.log")
                )
            pages: list[tuple[str, Page]] = []
            for engine, count in counts.items():
                if not count:
                    continue
                browser = await stack.enter_async_context(
                    launch_browser(engine, BROWSER_PATHS[engine])
                )
                for _ in range(count):
                    context = await browser.new_context(viewport={"width": 960, "height": 600})
                    page = await context.new_page()
                    await page.goto(f"{server.url}/watch/mixed")
                    pages.append((engine, page))
            # Pages of both engines in turn would join in a different order; all join first.
            await asyncio.gather(*(wait_live(page, 40) for _, page in pages))
            print(f"{len(pages)} pages live; playing {args.duration:.0f} s", flush=True)
            await asyncio.sleep(args.duration)
            all_stats = [await page.evaluate("() => window.streamer.stats") for _, page in pages]
    finally:
        await server.close()
    engines = [engine for engine, _ in pages]
    engine_of = {s["peer_id"]: e for e, s in zip(engines, all_stats, strict=True)}
    return [summarize(s, e, engine_of) for e, s in zip(engines, all_stats, strict=True)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chromium", type=int, default=2)
    parser.add_argument("--firefox", type=int, default=2)
    parser.add_argument("--relays", type=int, default=1)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    rows = asyncio.run(run(args))
    print(f"{'engine':<9} {'continuity':>10} {'lag p50':>8} {'lag p95':>8} {'peers':>6} "
          f"{'from other engine':>18}")  # fmt: skip
    for r in rows:
        print(
            f"{r['engine']:<9} {r['continuity']:>10.3f} {r['lag_s_p50']:>7.2f}s "
            f"{r['lag_s_p95']:>7.2f}s {r['peer_share']:>6.0%} "
            f"{r['bytes_from_other_engine'] / 1e3:>15.0f} KB"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
