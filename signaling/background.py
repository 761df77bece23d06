"""Background loops that always stop.

A cancellation alone is not enough to end a loop that calls redis-py: a cancel delivered
while a Redis call was under way has been seen to be swallowed there, and the loop went back to
sleep for good (the server's shutdown then waited forever). So each loop also checks a stop
flag after every await, and stopping waits for it a bounded time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

#: Stopping waits at most this long for a loop to end.
STOP_TIMEOUT_S = 5.0


async def stop_task(task: asyncio.Task[None], timeout_s: float = STOP_TIMEOUT_S) -> None:
    """Cancel `task` and wait for it to end, at most `timeout_s`."""
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=timeout_s)
    if not done:
        log.warning("%s did not stop within %.0f s; left behind", task.get_name(), timeout_s)
    elif not task.cancelled() and task.exception() is not None:
        log.warning("%s ended with %r", task.get_name(), task.exception())


class Periodic:
    """Runs `step` every `interval_s` until stopped; a failing step is logged and tried again
    at the next round (e.g. Redis unreachable for a moment)."""

    def __init__(self, name: str, interval_s: float, step: Callable[[], Awaitable[None]]) -> None:
        self.name = name
        self.interval_s = interval_s
        self.step = step
        self.stopping = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        self.stopping = True
        if self._task is not None:
            await stop_task(self._task)

    async def _run(self) -> None:
        while not self.stopping:
            await asyncio.sleep(self.interval_s)
            if self.stopping:
                return
            try:
                await self.step()
            except Exception as error:
                if not self.stopping:
                    log.warning("%s failed: %s", self.name, error)
