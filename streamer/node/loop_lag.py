"""How late the event loop runs a timer: a busy process's delay on everything it does.

Why: every SACK, request and piece of a node goes through one asyncio loop. When that loop is
busy (a relay serving dozens of viewers), a timer due now runs late, and so does the SACK its
sender's retransmission timer waits for; a stalled link then looks like loss. The meter wakes
every `interval_s` and records how late it woke; `figures` gives the p99 and the longest.
Pure apart from `run` (which only sleeps and reads the loop's clock).
"""

from __future__ import annotations

import asyncio
from collections import Counter

BUCKET_MS = 5
"""Lateness is kept as a histogram of 5 ms buckets: bounded memory over any run length."""


class LoopLagMeter:
    def __init__(self, interval_s: float = 0.1) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self.interval_s = interval_s
        self._buckets: Counter[int] = Counter()
        self._count = 0
        self._longest_s = 0.0

    def record(self, late_s: float) -> None:
        late_s = max(0.0, late_s)
        self._buckets[int(late_s * 1000) // BUCKET_MS] += 1
        self._count += 1
        self._longest_s = max(self._longest_s, late_s)

    def figures(self) -> dict[str, float] | None:
        """The p99 lateness (the top of its 5 ms bucket) and the longest, in ms."""
        if not self._count:
            return None
        rank = self._count - self._count // 100  # the sample 99% of the others are not above
        seen = 0
        for bucket in sorted(self._buckets):
            seen += self._buckets[bucket]
            if seen >= rank:
                p99_ms = (bucket + 1) * BUCKET_MS
                break
        return {"p99_ms": float(p99_ms), "longest_ms": round(self._longest_s * 1000, 1)}

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due_s = loop.time() + self.interval_s
            await asyncio.sleep(self.interval_s)
            self.record(loop.time() - due_s)
