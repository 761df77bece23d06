"""WebKit for the browser tests: Debian's WebKitGTK MiniBrowser, driven by WebKitWebDriver.

Why WebKitGTK and not WPE (`cog` + wpewebkit-driver, headless): on Debian 12 WPE is frozen at
2.38.6 (2023, no security updates, no ManagedMediaSource), while webkit2gtk follows upstream's
stable series (2.50.6 in 2026-12) with ManagedMediaSource, as Safari 17+ has it. Both start
over WebDriver here in ~1-2 s; GTK needs an X display, which a private Xvfb gives it
(MiniBrowser's own `--headless` hung at session start on 2026-12-06). Neither build has WebRTC
(`RTCPeerConnection` is undefined), so WebKit tests the player path only, not the swarm.

Driven over WebDriver classic with selenium (its WebKitGTK classes); selenium's calls block, so
async tests run them in a thread (`asyncio.to_thread`) while their servers serve.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from selenium import webdriver

MINIBROWSER_PATH = "/usr/lib/x86_64-linux-gnu/webkit2gtk-4.1/MiniBrowser"
WEBKIT_DRIVER_PATH = "/usr/bin/WebKitWebDriver"
XVFB_PATH = "/usr/bin/Xvfb"
#: Why the swarm tests do not run in WebKit (measured with webkit2gtk 2.50.6 and WPE 2.38.6).
NO_WEBRTC_REASON = (
    "Debian's WebKit builds (webkit2gtk 2.50, WPE 2.38) are built without WebRTC: "
    "RTCPeerConnection is undefined, so a WebKit page cannot join the swarm"
)


def require_webkit() -> None:
    """Skips when WebKitGTK, its driver or Xvfb is missing, or fails under REQUIRE_BROWSER=1."""
    missing = [p for p in (MINIBROWSER_PATH, WEBKIT_DRIVER_PATH, XVFB_PATH) if not shutil.which(p)]
    if missing:
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail(f"REQUIRE_BROWSER=1 but {', '.join(missing)} missing (run `make test`)")
        pytest.skip(
            f"{', '.join(missing)} missing (make test installs Debian's webkit2gtk-driver, "
            "gstreamer1.0-libav and xvfb when apt is usable as root)"
        )


@contextmanager
def xvfb_display() -> Iterator[str]:
    """A private X display (":N") on a free number, for one test module; stopped afterwards."""
    read_end, write_end = os.pipe()
    proc = subprocess.Popen(
        [
            XVFB_PATH,
            "-displayfd",
            str(write_end),
            "-screen",
            "0",
            "1280x800x24",
            "-nolisten",
            "tcp",
        ],
        pass_fds=(write_end,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_end)
    try:
        with os.fdopen(read_end) as reader:
            number = reader.readline().strip()  # Xvfb writes it once it accepts clients
        if not number:
            raise RuntimeError(f"Xvfb did not start (exit status {proc.poll()})")
        yield f":{number}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def webkit_driver(display: str) -> Iterator[webdriver.Remote]:
    """A MiniBrowser session on `display`, always closed afterwards."""
    options = webdriver.WebKitGTKOptions()
    options.binary_location = MINIBROWSER_PATH
    options.add_argument("--automation")
    env = {**os.environ, "DISPLAY": display}
    env.pop("WAYLAND_DISPLAY", None)
    service = webdriver.WebKitGTKService(executable_path=WEBKIT_DRIVER_PATH, env=env)
    driver = webdriver.WebKitGTK(options=options, service=service)
    try:
        driver.set_window_size(800, 600)
        yield driver
    finally:
        driver.quit()
