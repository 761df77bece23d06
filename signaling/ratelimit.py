"""Token bucket (pure: the caller passes `now`), one per connection for messages and one for bytes.

Why a bucket: peers legitimately burst (a new neighbour means an offer and a dozen ICE candidates)
but a sustained flood must not steal the event loop from everyone else.
"""

from __future__ import annotations


class TokenBucket:
    """`rate_per_s` tokens refill per second up to `burst`; `allow` spends `cost` if available."""

    __slots__ = ("_tokens", "_updated_s", "burst", "rate_per_s")

    def __init__(self, rate_per_s: float, burst: float, now: float) -> None:
        if rate_per_s <= 0 or burst <= 0:
            raise ValueError("rate_per_s and burst must be > 0")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._tokens = burst
        self._updated_s = now

    def tokens(self, now: float) -> float:
        """Tokens available at `now` (a clock going backwards refills nothing)."""
        elapsed_s = max(0.0, now - self._updated_s)
        return min(self.burst, self._tokens + elapsed_s * self.rate_per_s)

    def allow(self, now: float, cost: float = 1.0) -> bool:
        """Spend `cost` tokens and return True, or return False and spend nothing."""
        self._tokens = self.tokens(now)
        self._updated_s = max(self._updated_s, now)
        if cost > self._tokens:
            return False
        self._tokens -= cost
        return True
