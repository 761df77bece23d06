"""Peers whose link failed lately: not offered another link until a while has passed (pure: `now_s`
is passed in).

Why: a peer that refused us (full), never answered or was dropped would be picked again at once,
by the server's next list or by our neighbours' next hints, each retry a WebRTC setup on both
sides. Why forgotten: with no server the hints name only a handful of peers, and a peer full a
moment ago may have room once others left; remembered for ever, it would never be tried again.
The page keeps the same memory (web/static/js/recentfailures.js); both run
tests/scenarios/recent_failures.json.
"""

from __future__ import annotations

FAILED_PEER_MEMORY_S = 20.0


class RecentFailures:
    def __init__(self, memory_s: float = FAILED_PEER_MEMORY_S) -> None:
        self.memory_s = memory_s
        self._failed_at_s: dict[str, float] = {}

    def add(self, peer_id: str, now_s: float) -> None:
        """peer_id's link failed now (a later failure starts the wait again)."""
        self._failed_at_s[peer_id] = now_s

    def ids(self, now_s: float) -> set[str]:
        """The peers not to try now; those failed more than memory_s ago are forgotten."""
        for peer_id, failed_at_s in list(self._failed_at_s.items()):
            if now_s - failed_at_s > self.memory_s:
                del self._failed_at_s[peer_id]
        return set(self._failed_at_s)
