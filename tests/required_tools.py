"""Tests that need a program from a Debian package: found, or skipped with what to install, or
failed when CI says the program must be there (REQUIRE_*=1, set by .ci/run)."""

from __future__ import annotations

import os
import shutil

import pytest


def required_program(name: str, require_env: str, install_hint: str) -> str:
    """The path of `name`; skips (fails when `require_env`=1) when it is not installed."""
    found = shutil.which(name)
    if found is None:
        if os.environ.get(require_env) == "1":
            pytest.fail(f"{require_env}=1 but `{name}` is not installed ({install_hint})")
        pytest.skip(f"`{name}` is not installed ({install_hint})")
    return found
