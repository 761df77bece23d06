"""Shared test configuration."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest
from browser_helpers import require_browser


@pytest.fixture
def chromium_path() -> str:
    """Debian's chromium (skips or fails as require_browser says)."""
    return require_browser("chromium")


@pytest.fixture
def firefox_path() -> str:
    """Debian's firefox-esr (skips or fails as require_browser says)."""
    return require_browser("firefox")


@pytest.fixture(params=["chromium", "firefox"])
def engine(request: pytest.FixtureRequest) -> tuple[str, str]:
    """Each browser engine in turn, with its binary: (name, path)."""
    return request.param, require_browser(request.param)


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[str]]]:
    """Processes a test starts; any still running at its end are killed."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=5)
