"""A test needing a missing program skips, or fails when CI requires the program."""

from __future__ import annotations

import pytest
from required_tools import required_program

MISSING = "streamer-no-such-program"


def test_a_missing_program_skips_with_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REQUIRE_X", raising=False)
    with pytest.raises(pytest.skip.Exception, match="Debian x-tools"):
        required_program(MISSING, "REQUIRE_X", "Debian x-tools")


def test_a_required_missing_program_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REQUIRE_X", "1")
    with pytest.raises(pytest.fail.Exception, match="REQUIRE_X=1"):
        required_program(MISSING, "REQUIRE_X", "Debian x-tools")


def test_a_present_program_is_found() -> None:
    assert required_program("sh", "REQUIRE_X", "Debian dash").endswith("/sh")
