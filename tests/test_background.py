"""Background loops stop even when what they call swallows the cancellation."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import pytest

from signaling.background import Periodic, stop_task


async def test_a_loop_whose_step_swallows_the_cancel_still_stops() -> None:
    in_step = asyncio.Event()

    async def swallowing_step() -> None:
        in_step.set()
        with contextlib.suppress(asyncio.CancelledError):  # as a redis-py call was seen to do
            await asyncio.sleep(30)

    periodic = Periodic("swallower", 0.0, swallowing_step)
    periodic.start()
    await in_step.wait()
    await asyncio.wait_for(periodic.stop(), 2.0)
    assert periodic._task is not None and periodic._task.done()


async def test_a_failing_step_is_logged_and_tried_again(caplog: pytest.LogCaptureFixture) -> None:
    calls = 0
    second = asyncio.Event()

    async def flaky_step() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("redis went away")
        second.set()

    periodic = Periodic("flaky", 0.0, flaky_step)
    with caplog.at_level(logging.WARNING):
        periodic.start()
        await asyncio.wait_for(second.wait(), 2.0)
        await periodic.stop()
    assert "flaky failed: redis went away" in caplog.text


async def test_stopping_a_task_that_never_ends_gives_up_after_its_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    released = False

    async def stubborn() -> None:
        while not released:
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                continue

    task = asyncio.get_running_loop().create_task(stubborn(), name="stubborn")
    await asyncio.sleep(0)
    with caplog.at_level(logging.WARNING):
        await asyncio.wait_for(stop_task(task, timeout_s=0.1), 2.0)
    assert not task.done()
    assert "stubborn did not stop" in caplog.text
    released = True
    task.cancel()
    await asyncio.wait({task}, timeout=2.0)
    assert task.done()
