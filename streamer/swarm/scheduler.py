"""Which chunk to ask of which neighbour: a pure function, easy to port and to test.

Policy: chunks near their playout deadline first (urgent, by deadline), then rarest first further
ahead (fewest holders, then lowest seq). A chunk goes to one neighbour at a time (each chunk is
downloaded about once per peer: no flooding). Peers are preferred over the source; the source is
asked only when no peer neighbour holds the chunk, or when the chunk is urgent and every peer that
holds it is busy. Among holders: those with the whole chunk first, then the most spare capacity.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Want:
    """A chunk we miss (or miss pieces of) and nobody is fetching for us."""

    seq: int
    deadline_s: float
    holders: tuple[str, ...]
    """Peer neighbours (not the source) that hold it, whole or partly, and may be asked."""
    complete_holders: frozenset[str]
    source_holders: tuple[str, ...]
    estimate_bytes: int


def plan_requests(
    wants: list[Want],
    capacity_bytes: dict[str, int],
    now: float,
    urgent_s: float,
    rng: random.Random,
) -> list[tuple[int, str]]:
    """Assign wanted chunks to neighbours; returns [(seq, peer_id)], most pressing first.

    capacity_bytes (spare in-flight room per neighbour) is consumed as chunks are assigned.
    """
    urgent = sorted(
        (w for w in wants if w.deadline_s - now <= urgent_s), key=lambda w: w.deadline_s
    )
    later = sorted(
        (w for w in wants if w.deadline_s - now > urgent_s),
        key=lambda w: (len(w.holders) + len(w.source_holders), w.seq),
    )
    plan: list[tuple[int, str]] = []
    for want in urgent + later:
        is_urgent = want.deadline_s - now <= urgent_s
        pool = [h for h in want.holders if capacity_bytes.get(h, 0) > 0]
        if not pool and (not want.holders or is_urgent):
            pool = [h for h in want.source_holders if capacity_bytes.get(h, 0) > 0]
        if not pool:
            continue
        rng.shuffle(pool)
        best = min(pool, key=lambda h: (h not in want.complete_holders, -capacity_bytes.get(h, 0)))
        capacity_bytes[best] = capacity_bytes.get(best, 0) - want.estimate_bytes
        plan.append((want.seq, best))
    return plan
