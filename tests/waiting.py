"""Wait on a condition instead of sleeping a guessed time: the test goes on as soon as it holds,
and fails naming what never happened when it does not within the deadline."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

POLL_INTERVAL_S = 0.05


async def wait_until(
    condition: Callable[[], bool], timeout_s: float, what: str, interval_s: float = POLL_INTERVAL_S
) -> None:
    """Poll `condition` (for state that fires no event) until it holds, or fail the test."""
    try:
        async with asyncio.timeout(timeout_s):
            while not condition():
                await asyncio.sleep(interval_s)
    except TimeoutError:
        raise AssertionError(f"not within {timeout_s:g} s: {what}") from None


async def hold_still(duration_s: float) -> None:
    """Let `duration_s` pass on purpose: the test then checks that something did NOT happen
    (or that a timeout lapsed), which no condition can signal."""
    await asyncio.sleep(duration_s)
