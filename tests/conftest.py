"""Shared test configuration."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator

import pytest

CHROMIUM_PATH = "/usr/bin/chromium"


def chromium_available() -> bool:
    return shutil.which(CHROMIUM_PATH) is not None


@pytest.fixture
def chromium_path() -> str:
    """Debian's chromium; skips when missing, or fails under REQUIRE_BROWSER=1 (as in CI)."""
    if not chromium_available():
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail(f"REQUIRE_BROWSER=1 but {CHROMIUM_PATH} is missing (run `make test`)")
        pytest.skip(f"{CHROMIUM_PATH} is missing (make test installs Debian's chromium)")
    return CHROMIUM_PATH


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[str]]]:
    """Processes a test starts; any still running at its end are killed."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=5)
