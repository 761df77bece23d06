"""The hang report names where a stuck task waits."""

from __future__ import annotations

import asyncio

from hang_report import await_chain


async def test_the_await_chain_goes_down_to_what_a_task_waits_on() -> None:
    never = asyncio.Event()

    async def waiting_for_a_reply() -> None:
        await never.wait()

    task = asyncio.create_task(waiting_for_a_reply())
    await asyncio.sleep(0)
    chain = await_chain(task)
    task.cancel()
    assert "waiting_for_a_reply" in chain[1]
    assert any(line.endswith(" in wait") for line in chain[2:])
