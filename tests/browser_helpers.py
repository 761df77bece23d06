"""Helpers for the real-browser tests: launch Debian's chromium or firefox-esr, look at a picture.

Why here: every browser test launches the same headless browsers with the same settings, and
judges "the picture is not blank" the same way (pixel variance of a screenshot of the <video>).

Firefox is driven by Playwright for Python over WebDriver BiDi (`channel="moz-firefox"`), which
drives Debian's own binary without `playwright install` (nothing can be downloaded here); the
same Page API as for Chromium lets one test run in both. Playwright 1.65 sends a BiDi command
Firefox 153 ESR does not know (emulation.setMediaFeaturesOverride), hence the pin in pyproject.
"""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from playwright.async_api import Browser, Page, async_playwright

from streamer.netbed.page import CHROMIUM_ARGS  # one set of flags for tests and the test bed

CHROMIUM_PATH = "/usr/bin/chromium"
#: Browser engines the browser tests run in, and the Debian binary of each (`make browser`).
BROWSER_PATHS = {"chromium": CHROMIUM_PATH, "firefox": "/usr/bin/firefox-esr"}
_DEBIAN_PACKAGES = {"chromium": "chromium", "firefox": "firefox-esr"}


def require_browser(engine: str) -> str:
    """The binary of `engine`; skips when missing, or fails under REQUIRE_BROWSER=1 (as in CI)."""
    path = BROWSER_PATHS[engine]
    if shutil.which(path) is None:
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail(f"REQUIRE_BROWSER=1 but {path} is missing (run `make test`)")
        package = _DEBIAN_PACKAGES[engine]
        pytest.skip(f"{path} is missing (make test installs Debian's {package})")
    return path


#: Firefox's counterpart of CHROMIUM_ARGS' autoplay flag. Its host candidates keep Firefox's
#: default (mDNS names, as its users have them): the swarm connects either way.
FIREFOX_PREFS: dict[str, str | float | bool] = {
    "media.autoplay.default": 0,
    "media.autoplay.blocking_policy": 0,
    "datareporting.policy.dataSubmissionEnabled": False,
    "app.update.enabled": False,
}


@asynccontextmanager
async def launch_browser(
    engine: str, path: str, *, lan_name: str | None = None
) -> AsyncIterator[Browser]:
    """A headless `engine` ("chromium" or "firefox") for one test, always closed afterwards.

    `lan_name`: a host name the browser resolves to 127.0.0.1. A page from it is not a secure
    context (only localhost and loopback addresses are), as a plain-http page on a LAN is not.
    """
    async with async_playwright() as pw:
        if engine == "firefox":
            prefs = dict(FIREFOX_PREFS)
            if lan_name:
                prefs["network.dns.localDomains"] = lan_name
            browser = await pw.firefox.launch(
                executable_path=path, channel="moz-firefox", headless=True, firefox_user_prefs=prefs
            )
        elif engine == "chromium":
            args = list(CHROMIUM_ARGS)
            if lan_name:
                args.append(f"--host-resolver-rules=MAP {lan_name} 127.0.0.1")
            browser = await pw.chromium.launch(executable_path=path, headless=True, args=args)
        else:
            raise ValueError(f"unknown browser engine {engine!r}")
        try:
            yield browser
        finally:
            await browser.close()


def launch_chromium(chromium_path: str) -> AbstractAsyncContextManager[Browser]:
    """A headless Chromium for one test, always closed afterwards."""
    return launch_browser("chromium", chromium_path)


def collect_console(page: Page) -> list[str]:
    """Keep the page's console errors and uncaught exceptions (shown when a test fails)."""
    lines: list[str] = []
    page.on(
        "console",
        lambda msg: (
            lines.append(f"{msg.type}: {msg.text}") if msg.type in ("error", "warning") else None
        ),
    )
    page.on("pageerror", lambda exc: lines.append(f"pageerror: {exc}"))
    return lines


def luminance_stdev(png_bytes: bytes) -> float:
    """Standard deviation of grey levels: ~0 for a blank (black, grey) picture, large for video."""
    image = Image.open(io.BytesIO(png_bytes)).convert("L")
    image.thumbnail((160, 160))
    histogram = image.histogram()
    count = sum(histogram)
    mean = sum(level * n for level, n in enumerate(histogram)) / count
    variance = sum(n * (level - mean) ** 2 for level, n in enumerate(histogram)) / count
    return float(variance**0.5)


async def video_state(page: Page, selector: str = "video") -> dict[str, Any]:
    """currentTime, readyState, paused and decoded/dropped frame counts of the <video>."""
    state: dict[str, Any] = await page.eval_on_selector(
        selector,
        """v => {
            const q = v.getVideoPlaybackQuality();
            return {currentTime: v.currentTime, readyState: v.readyState, paused: v.paused,
                    framesDecoded: q.totalVideoFrames, framesDropped: q.droppedVideoFrames,
                    width: v.videoWidth, height: v.videoHeight,
                    error: v.error ? v.error.message || String(v.error.code) : null};
        }""",
    )
    return state


#: axe-core, vendored by `make axe` (npm, pinned in the Makefile).
AXE_GLOB = "axe-core-*.min.js"
_AXE_DIR = Path(__file__).resolve().parents[1] / ".venv" / "vendor"


def require_axe() -> Path:
    """The vendored axe-core script; skips when missing, or fails under REQUIRE_BROWSER=1."""
    found = sorted(_AXE_DIR.glob(AXE_GLOB))
    if not found:
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail(f"REQUIRE_BROWSER=1 but no {_AXE_DIR}/{AXE_GLOB} (run `make axe`)")
        pytest.skip(f"no {_AXE_DIR}/{AXE_GLOB}: `make axe` vendors axe-core (needs npm)")
    return found[-1]


async def accessibility_violations(page: Page) -> list[str]:
    """axe-core's WCAG 2 A/AA violations on the page (shadow roots included), one line each."""
    if not await page.evaluate("() => typeof window.axe === 'object'"):
        await page.add_script_tag(path=str(require_axe()))
    found: list[str] = await page.evaluate(
        """async () => {
            const result = await axe.run(document, {
                runOnly: {type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]},
            });
            return result.violations.map((v) => {
                const where = v.nodes.map((n) => n.target.join(" ")).join(", ");
                return `${v.id} (${v.impact}): ${v.help} at ${where}`;
            });
        }"""
    )
    return found


async def focus_order(page: Page, presses: int) -> list[str]:
    """The accessible names of what Tab focuses, `presses` times from the top of the page.

    Follows focus into shadow roots; a name is aria-label, title or the visible text, else (a stop
    without a name) `<TAG id class>`. Starts from a focused marker put first in the body (blur()
    alone leaves the browser's starting point where focus was).
    """
    await page.evaluate(
        """() => {
            const start = document.createElement("span");
            start.id = "focus-order-start";
            start.tabIndex = -1;
            document.body.prepend(start);
            start.focus();
        }"""
    )
    names: list[str] = []
    for _ in range(presses):
        await page.keyboard.press("Tab")
        names.append(
            await page.evaluate(
                """() => {
                    let el = document.activeElement;
                    while (el && el.shadowRoot && el.shadowRoot.activeElement) {
                        el = el.shadowRoot.activeElement;
                    }
                    if (!el || el === document.body) return "";
                    const name = (el.getAttribute("aria-label") || el.getAttribute("title")
                                  || el.textContent || "").trim();
                    return name || `<${el.tagName} ${el.id} ${el.className}>`;
                }"""
            )
        )
    await page.evaluate("() => document.getElementById('focus-order-start').remove()")
    return names


def shots_dir() -> Path:
    """Where screenshots go: $BROWSER_SHOTS_DIR (to look at them) or a temporary folder."""
    folder = Path(
        os.environ.get("BROWSER_SHOTS_DIR") or Path(tempfile.gettempdir()) / "streamer-shots"
    )
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@asynccontextmanager
async def streamer_process(*args: str, log_path: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    """Run `python -m streamer ARGS` (a broadcaster or relay) for one test, then stop it.

    SIGTERM first (the commands leave cleanly on it), SIGKILL if it lingers; output goes to
    `log_path` so a failing test can show it.
    """
    log = log_path.open("wb")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "streamer", *args, stdout=log, stderr=asyncio.subprocess.STDOUT
    )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), timeout=5)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        log.close()


async def page_stats(page: Page) -> dict[str, Any]:
    """window.streamer.stats of a watch page (the `streamer watch --stats-json` field names)."""
    stats: dict[str, Any] = await page.evaluate("() => window.streamer && window.streamer.stats")
    return stats or {}
