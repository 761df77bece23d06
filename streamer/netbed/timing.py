"""When the shim releases a packet: per-site one-way delay, jitter and loss, seeded.

A packet from site A to site B crosses A's access link and B's, so it is delayed by
delay_A + delay_B (+ each side's jitter) and lost with 1 - (1 - loss_A)(1 - loss_B). Within one
(source site, destination site) direction packets leave in the order they came (a jittery link is
a queue, not a shuffler), so the only reordering is none at all: a packet whose jitter draw would
release it before an earlier one waits for that one.

Rules: pure (no clock, no I/O); every random draw comes from the seeded `random.Random` given, so
a run is reproducible from its seed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class LinkProfile:
    """One site's access link, one way."""

    delay_s: float = 0.0
    jitter_s: float = 0.0
    """Standard deviation of a normal draw added to the delay (the total never goes below 0)."""
    loss: float = 0.0
    """Probability in [0, 1) that a packet crossing this link is lost."""

    def __post_init__(self) -> None:
        if self.delay_s < 0 or self.jitter_s < 0:
            raise ValueError("delay and jitter must not be negative")
        if not 0.0 <= self.loss < 1.0:
            raise ValueError("loss must be within [0, 1)")


NO_LINK = LinkProfile()


@dataclass
class ReleaseClock:
    """Release times of forwarded packets, given their arrival time and their two sites' links."""

    links: dict[str, LinkProfile]
    rng: random.Random = field(default_factory=lambda: random.Random(1))
    _last_release_s: dict[tuple[str, str], float] = field(default_factory=dict)
    packets: int = 0
    dropped: int = 0

    def release_s(self, src: str | None, dst: str | None, arrival_s: float) -> float | None:
        """The instant to let the packet go, or None to drop it. Unknown sites add nothing."""
        self.packets += 1
        a = self.links.get(src, NO_LINK) if src is not None else NO_LINK
        b = self.links.get(dst, NO_LINK) if dst is not None else NO_LINK
        # Always draw the same number of values per packet, so one site's settings do not shift
        # the random sequence another site sees.
        lost_a = self.rng.random() < a.loss
        lost_b = self.rng.random() < b.loss
        jitter_s = self.rng.gauss(0.0, 1.0) * a.jitter_s + self.rng.gauss(0.0, 1.0) * b.jitter_s
        if lost_a or lost_b:
            self.dropped += 1
            return None
        release_s = arrival_s + max(0.0, a.delay_s + b.delay_s + jitter_s)
        key = (src or "", dst or "")
        release_s = max(release_s, self._last_release_s.get(key, release_s))
        self._last_release_s[key] = release_s
        return release_s


def path_loss(a: LinkProfile, b: LinkProfile) -> float:
    """The chance a packet from a's site to b's site is lost."""
    return 1.0 - (1.0 - a.loss) * (1.0 - b.loss)


def path_rtt_s(a: LinkProfile, b: LinkProfile) -> float:
    """Round-trip time between two sites without jitter or queueing."""
    return 2.0 * (a.delay_s + b.delay_s)
