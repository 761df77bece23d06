"""Which uploader gets the first copy of each piece of a fresh chunk (source only). Pure.

The source super-seeds: each piece of a fresh chunk is first offered to one uploading neighbour,
and the swarm spreads it from there. A first copy is only as quick as its holder's uplink: every
peer waits for that piece, so a holder on a narrow, queued home uplink holds up the whole chunk
(test bed, 0.5x-stream uplink: continuity 0.93 and the highest lag, set by its pieces). The
source cannot see uplinks, but it sees how soon each neighbour asks for the pieces it was
offered: a request waits behind that neighbour's uploads just as its forwarded pieces will.

Rules (the JS core's seeding.js follows the same ones, held together by
tests/scenarios/seeding.json):
- an uploader's weight is 1 / its seed response (a low quantile of its recent ones), at least
  floor_s; one never measured gets the median of those measured (prior_s when none is);
- pieces go out by smooth weighted round robin over uploaders in peer-id order: each piece, every
  uploader's credit grows by its weight, the first with the most credit takes it and pays the
  total weight. Credit carries from chunk to chunk, so a weight of a third of a piece per chunk
  still gets a piece every third chunk, and nobody is starved of the chance to measure again.
"""

from __future__ import annotations

from collections.abc import Mapping


def seed_weights(
    responses_s: Mapping[str, float | None], floor_s: float, prior_s: float
) -> dict[str, float]:
    """Weight per uploader (in the mapping's order) from its seed response, None if unmeasured."""
    known = sorted(r for r in responses_s.values() if r is not None)
    unknown_s = known[len(known) // 2] if known else prior_s
    return {
        pid: 1.0 / max(floor_s, unknown_s if r is None else r) for pid, r in responses_s.items()
    }


def assign_first_copies(
    weights: Mapping[str, float], piece_count: int, credit: dict[str, float]
) -> list[str]:
    """The uploader of each piece's first copy; credit (uploader -> credit) is carried over
    between chunks and updated here (uploaders no longer weighed are dropped from it)."""
    for pid in [p for p in credit if p not in weights]:
        del credit[pid]
    total = sum(weights.values())
    out: list[str] = []
    for _ in range(piece_count):
        best: str | None = None
        for pid, weight in weights.items():
            credit[pid] = credit.get(pid, 0.0) + weight
            if best is None or credit[pid] > credit[best]:
                best = pid
        if best is None:
            break
        credit[best] -= total
        out.append(best)
    return out
