"""Candidate selection for a channel (pure: no I/O, randomness passed in).

Rules this module never breaks: a selection looks at a bounded random sample of the channel
(`sample_factor * count` peers), never the whole list, so a join costs the same with 50 or 50,000
peers; it never returns the requester or an excluded peer; every operation is O(1) or O(count).

Preference, as weights in a weighted random draw (so load spreads instead of piling on the "best"
peer): relays and peers reporting spare upload first, then peers holding recent chunks (close to
the broadcaster's live edge); peers that reported no spare upload or many neighbours last.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

from signaling_wire import Role

T = TypeVar("T")

#: A peer this many seqs behind the live edge (or closer) counts as holding recent chunks.
FRESH_LAG_SEQS = 2
STALE_LAG_SEQS = 10
CROWDED_NEIGHBOURS = 16
SPARE_UNIT_BPS = 1_000_000


@dataclass(slots=True)
class Candidate:
    """What the tracker knows about one peer; updated from its `status` messages."""

    peer_id: str
    role: Role
    latest_seq: int | None = None
    spare_upload_bps: int | None = None
    neighbour_count: int = 0

    def to_json(self) -> dict[str, object]:
        return {"peer_id": self.peer_id, "role": self.role, "latest_seq": self.latest_seq}


class IndexedSet(Generic[T]):
    """A set with O(1) add, remove and uniform random access (list + position index)."""

    __slots__ = ("_index", "_items")

    def __init__(self) -> None:
        self._items: list[T] = []
        self._index: dict[T, int] = {}

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, item: object) -> bool:
        return item in self._index

    def add(self, item: T) -> None:
        if item not in self._index:
            self._index[item] = len(self._items)
            self._items.append(item)

    def discard(self, item: T) -> None:
        position = self._index.pop(item, None)
        if position is None:
            return
        last = self._items.pop()
        if position < len(self._items):
            self._items[position] = last
            self._index[last] = position

    def sample(self, count: int, rng: random.Random) -> list[T]:
        """Up to `count` distinct items, uniformly at random, in O(count)."""
        if count >= len(self._items):
            return list(self._items)
        return [self._items[i] for i in rng.sample(range(len(self._items)), count)]


class Tracker:
    """The candidates of one channel, with a preferred pool (relays, broadcaster, spare upload)."""

    def __init__(self, sample_factor: int = 4) -> None:
        self.sample_factor = sample_factor
        self._peers: dict[str, Candidate] = {}
        self._all: IndexedSet[str] = IndexedSet()
        self._preferred: IndexedSet[str] = IndexedSet()
        #: Highest seq the broadcaster reported (peers' own claims cannot move it).
        self.live_edge_seq: int | None = None
        #: Peers weighed by the last select(): lets tests prove the work is bounded.
        self.last_examined = 0

    def __len__(self) -> int:
        return len(self._peers)

    def __contains__(self, peer_id: object) -> bool:
        return peer_id in self._peers

    def get(self, peer_id: str) -> Candidate | None:
        return self._peers.get(peer_id)

    def add(self, candidate: Candidate) -> None:
        self._peers[candidate.peer_id] = candidate
        self._all.add(candidate.peer_id)
        self._refile(candidate)

    def remove(self, peer_id: str) -> None:
        self._peers.pop(peer_id, None)
        self._all.discard(peer_id)
        self._preferred.discard(peer_id)

    def update(
        self,
        peer_id: str,
        latest_seq: int | None,
        spare_upload_bps: int | None,
        neighbour_count: int,
    ) -> None:
        candidate = self._peers.get(peer_id)
        if candidate is None:
            return
        candidate.latest_seq = latest_seq
        candidate.spare_upload_bps = spare_upload_bps
        candidate.neighbour_count = neighbour_count
        if candidate.role == "broadcaster" and latest_seq is not None:
            self.live_edge_seq = latest_seq
        self._refile(candidate)

    def _refile(self, candidate: Candidate) -> None:
        preferred = candidate.role in ("relay", "broadcaster") or bool(candidate.spare_upload_bps)
        if preferred:
            self._preferred.add(candidate.peer_id)
        else:
            self._preferred.discard(candidate.peer_id)

    def weight(self, candidate: Candidate) -> float:
        """How much we would like `candidate` as someone's neighbour (> 0)."""
        return weight(candidate, self.live_edge_seq)

    def select(
        self,
        requester_id: str | None,
        count: int,
        rng: random.Random,
        exclude: frozenset[str] = frozenset(),
    ) -> list[Candidate]:
        """Up to `count` candidates for `requester_id`, drawn by weight from a bounded sample."""
        if count <= 0 or not self._peers:
            self.last_examined = 0
            return []
        budget = self.sample_factor * count
        pool = dict.fromkeys(self._preferred.sample(budget // 2, rng))
        pool.update(dict.fromkeys(self._all.sample(budget - len(pool), rng)))
        chosen = draw(
            (self._peers[peer_id] for peer_id in pool if peer_id != requester_id),
            count,
            rng,
            self.live_edge_seq,
            exclude,
        )
        self.last_examined = len(pool)
        return chosen


def weight(candidate: Candidate, live_edge_seq: int | None) -> float:
    """How much we would like `candidate` as someone's neighbour (> 0)."""
    value = 1.0
    if candidate.role == "relay":
        value *= 4.0
    elif candidate.role == "broadcaster":
        value *= 2.0
    spare_bps = candidate.spare_upload_bps
    if spare_bps is not None:
        value *= 1.0 + min(spare_bps / SPARE_UNIT_BPS, 4.0) if spare_bps > 0 else 0.25
    if candidate.latest_seq is None:
        value *= 0.5
    elif live_edge_seq is not None:
        lag_seqs = live_edge_seq - candidate.latest_seq
        if lag_seqs <= FRESH_LAG_SEQS:
            value *= 2.0
        elif lag_seqs > STALE_LAG_SEQS:
            value *= 0.5
    if candidate.neighbour_count >= CROWDED_NEIGHBOURS:
        value *= 0.5
    return value


def draw(
    pool: Iterable[Candidate],
    count: int,
    rng: random.Random,
    live_edge_seq: int | None,
    exclude: frozenset[str] = frozenset(),
) -> list[Candidate]:
    """Up to `count` of `pool` (a bounded sample), drawn by weight without replacement.

    Shared by the in-memory tracker and the cluster's sample from Redis.
    """
    keyed: list[tuple[float, Candidate]] = []
    for candidate in pool:
        if candidate.peer_id in exclude:
            continue
        # Efraimidis-Spirakis: top-k of u ** (1 / w) is a weighted sample without replacement.
        keyed.append((rng.random() ** (1.0 / weight(candidate, live_edge_seq)), candidate))
    keyed.sort(key=lambda pair: pair[0], reverse=True)
    return [candidate for _, candidate in keyed[:count]]
