"""Shared test configuration."""

from __future__ import annotations

import os
import shutil

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
