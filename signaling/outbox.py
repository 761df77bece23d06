"""A bounded send queue per WebSocket, drained by one writer task.

Why: `await ws.send_str()` waits when the peer reads slowly. Awaiting it inside another peer's
handler would let one slow reader stall everyone who sends to it. Instead `send()` never blocks:
it queues, and a queue over its cap (messages or bytes) means the reader is too slow, so the
connection is dropped (`on_overflow`) rather than buffering without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable

from aiohttp import web

log = logging.getLogger(__name__)


class Outbox:
    def __init__(
        self,
        ws: web.WebSocketResponse,
        max_msgs: int,
        max_bytes: int,
        on_overflow: Callable[[], None],
    ) -> None:
        self._ws = ws
        self._max_msgs = max_msgs
        self._max_bytes = max_bytes
        self._on_overflow = on_overflow
        self._queue: deque[str] = deque()
        self.queued_bytes = 0
        self._wakeup = asyncio.Event()
        self.closed = False
        self._task = asyncio.get_running_loop().create_task(self._run())

    def __len__(self) -> int:
        return len(self._queue)

    def send(self, text: str) -> bool:
        """Queue `text`; False (and the overflow callback, once) if the reader is too slow."""
        if self.closed:
            return False
        if len(self._queue) >= self._max_msgs or self.queued_bytes + len(text) > self._max_bytes:
            self.closed = True
            self._queue.clear()
            self.queued_bytes = 0
            self._on_overflow()
            return False
        self._queue.append(text)
        self.queued_bytes += len(text)
        self._wakeup.set()
        return True

    async def _run(self) -> None:
        try:
            while True:
                while self._queue:
                    text = self._queue.popleft()
                    self.queued_bytes -= len(text)
                    await self._ws.send_str(text)
                self._wakeup.clear()
                await self._wakeup.wait()
        except (ConnectionError, RuntimeError) as error:
            # The socket went away under us: the handler's receive loop sees it and cleans up.
            log.debug("writer stopped: %s", error)

    async def flush(self, timeout_s: float) -> None:
        """Give queued messages (e.g. a fatal error) up to `timeout_s` to go out."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while self._queue and not self._task.done():
            if asyncio.get_running_loop().time() >= deadline:
                return
            await asyncio.sleep(0.005)

    async def close(self) -> None:
        self.closed = True
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
