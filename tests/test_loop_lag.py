"""streamer.node.loop_lag: how late a busy event loop runs its timers."""

from __future__ import annotations

import asyncio
import time

import pytest

from streamer.node.loop_lag import LoopLagMeter


def test_figures_are_the_p99_bucket_and_the_longest() -> None:
    meter = LoopLagMeter()
    assert meter.figures() is None
    for _ in range(990):
        meter.record(0.001)
    for _ in range(10):
        meter.record(0.042)
    assert meter.figures() == {"p99_ms": 5.0, "longest_ms": 42.0}
    meter.record(0.3)  # now 11 of 1001 are late: the p99 is among them
    assert meter.figures() == {"p99_ms": 45.0, "longest_ms": 300.0}
    meter.record(-0.01)  # a clock that ran early counts as on time
    with pytest.raises(ValueError):
        LoopLagMeter(interval_s=0)


async def test_a_blocked_loop_shows_as_lag() -> None:
    meter = LoopLagMeter(interval_s=0.01)
    task = asyncio.create_task(meter.run())
    try:
        while meter.figures() is None:
            await asyncio.sleep(0.01)
        time.sleep(0.2)  # the loop is busy: the meter's timer cannot run
        while (figures := meter.figures()) is not None and figures["longest_ms"] < 150:
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
    assert figures is not None and 150 <= figures["longest_ms"] < 2000
