"""One watch page in headless Chromium, as a process the bed starts inside a site's namespace.

    python -m streamer.netbed.page URL --duration S --stats-json F [--chromium PATH]

It opens the page, lets it play for `duration` seconds and writes `window.streamer.stats` (the
`streamer watch --stats-json` field names) plus the page's console errors. Chromium is driven by
Playwright for Python with Debian's binary (`playwright install` is not needed).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
]
DEFAULT_CHROMIUM = "/usr/bin/chromium"


async def watch(url: str, duration_s: float, chromium: str) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    console: list[str] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=chromium, headless=True, args=CHROMIUM_ARGS
        )
        try:
            page = await browser.new_page(viewport={"width": 960, "height": 600})
            page.on(
                "console",
                lambda m: console.append(f"{m.type}: {m.text}") if m.type == "error" else None,
            )
            page.on("pageerror", lambda exc: console.append(f"pageerror: {exc}"))
            await page.goto(url)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), duration_s)
            stats: dict[str, Any] = (
                await page.evaluate("() => window.streamer && window.streamer.stats") or {}
            )
        finally:
            await browser.close()
    stats = {k: v for k, v in stats.items() if k != "neighbours"} | {
        "role": "page",
        "console_errors": console[-20:],
    }
    return stats


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m streamer.netbed.page")
    parser.add_argument("url")
    parser.add_argument("--duration", type=float, required=True)
    parser.add_argument("--stats-json", required=True)
    parser.add_argument("--chromium", default=DEFAULT_CHROMIUM)
    args = parser.parse_args(argv)
    stats = asyncio.run(watch(args.url, args.duration, args.chromium))
    Path(args.stats_json).write_text(json.dumps(stats, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
