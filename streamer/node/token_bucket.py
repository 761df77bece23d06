"""An upload cap as a token bucket (pure: `now` is passed in).

Why a deficit bucket: the swarm core hands out a whole message (up to 64 KiB) before we know its
size, so sending is allowed whenever the balance is positive and the message may take it below
zero; the cap still holds on average and the burst stays bounded by `burst_bytes` + one message.
"""

from __future__ import annotations


class TokenBucket:
    def __init__(self, rate_bytes_per_s: float, burst_bytes: float, now: float) -> None:
        if rate_bytes_per_s <= 0 or burst_bytes <= 0:
            raise ValueError("rate and burst must be positive")
        self.rate_bytes_per_s = rate_bytes_per_s
        self.burst_bytes = burst_bytes
        self._tokens = burst_bytes
        self._last_s = now

    def _refill(self, now: float) -> None:
        elapsed_s = max(0.0, now - self._last_s)
        self._tokens = min(self.burst_bytes, self._tokens + elapsed_s * self.rate_bytes_per_s)
        self._last_s = max(self._last_s, now)

    def ready(self, now: float) -> bool:
        """True when a message may be sent now."""
        self._refill(now)
        return self._tokens > 0

    def consume(self, size_bytes: int, now: float) -> None:
        self._refill(now)
        self._tokens -= size_bytes

    def wait_s(self, now: float) -> float:
        """Seconds until `ready` turns True (0 when it already is)."""
        self._refill(now)
        if self._tokens > 0:
            return 0.0
        return (-self._tokens) / self.rate_bytes_per_s + 1e-3
