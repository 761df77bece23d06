"""Which pieces to ask of which neighbour: a pure function, easy to port and to test.

Policy (docs/protocol.md, Behaviour, "Pull"), piece by piece:
- chunks in order: urgent ones (deadline within urgent_s) by deadline, then the rest rarest first
  (fewest holders, then lowest seq);
- without the chunk's verified header, ask one holder for the header and one piece;
- each missing piece nobody is fetching for us goes to one holder (and so does a piece stuck in
  a holder's queue, Want.stuck, but never to that holder again), chosen by tier:
  1. a peer known to hold that piece (whole chunk, or the piece's bit in its last have), or the
     source when it advertised that very piece to us (super-seeding: we are its first receiver);
  2. only for an urgent chunk: a peer that is receiving it and verified its header before we did
     (it forwards pieces as they arrive; "before us" orders peers in time, so two peers never
     wait on each other);
  3. the source holding the whole chunk: only when the chunk is urgent, or when no uploading
     peer is linked to us (peers will bring the rest: the source's copy budget is kept for the
     urgent requests of neighbours about to stall; spent on the first requests after its
     whole-chunk announce, it left a piece stuck behind a slow first holder unrescued);
  within a tier, the holder with the most spare room (in pieces), ties broken at random;
- each assignment uses one piece of the holder's room (in-flight limit from measured throughput),
  except a piece the source advertised to us alone (its first copy): asked even without room;
The split spreads one chunk over several holders, so it downloads from all of them in parallel.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class RandomSource(Protocol):
    """What the scheduler needs of a random generator: floats in [0, 1)."""

    def random(self) -> float: ...


_U32 = 0xFFFFFFFF


def _imul(a: int, b: int) -> int:
    """32-bit multiplication modulo 2**32 (JavaScript's Math.imul, unsigned)."""
    return (a * b) & _U32


class Mulberry32:
    """A small seeded generator (mulberry32), the same as seededRandom in
    web/static/js/scheduler.js: one seed gives the same sequence of floats in both languages, so
    both swarm cores make the same random choices (tests/test_conformance.py)."""

    __slots__ = ("_state",)

    def __init__(self, seed: int) -> None:
        self._state = seed & _U32

    def random(self) -> float:
        self._state = a = (self._state + 0x6D2B79F5) & _U32
        t = _imul(a ^ (a >> 15), a | 1)
        t ^= (t + _imul(t ^ (t >> 7), t | 61)) & _U32
        return ((t ^ (t >> 14)) & _U32) / 4294967296


# Value objects, never changed once made. Not frozen=True: mypyc builds a plain dataclass's
# __init__ natively, a frozen one's in Python (16% of a compiled simulation's time).
@dataclass(slots=True)
class Holder:
    """A neighbour that may be asked for pieces of one chunk."""

    peer_id: str
    known_mask: int
    """Bit i set: it holds piece i for sure. -1 (every bit): it holds the whole chunk."""
    earlier: bool = False
    """It is receiving the chunk and verified the header before we did: ask it for any piece."""
    source: bool = False


@dataclass(slots=True)
class Want:
    """One chunk we miss pieces of."""

    seq: int
    deadline_s: float
    missing: tuple[int, ...]
    """Pieces we neither hold nor have asked anyone for (empty while need_header)."""
    need_header: bool
    """We hold no verified header and nobody is fetching it for us."""
    holders: tuple[Holder, ...]
    holder_count: int = -1
    """How many neighbours hold some of it, for rarest-first (-1: len(holders)). The caller
    may leave out of holders the peers that have no room (they could not be asked anyway)
    and give their number here."""
    stuck: tuple[tuple[int, str], ...] = ()
    """(piece, neighbour) for missing pieces already asked of a neighbour that has sent nothing
    of them for a while: they may move to another holder, never to that one."""

    @property
    def rarity(self) -> int:
        return len(self.holders) if self.holder_count < 0 else self.holder_count


@dataclass(slots=True)
class Ask:
    """One request to send: pieces (ascending) of seq from peer_id, header first if asked."""

    seq: int
    peer_id: str
    pieces: tuple[int, ...]
    want_header: bool


def _tier(holder: Holder, index: int, urgent: bool, peers_linked: bool) -> int | None:
    """0 = best; None = this holder is not to be asked for this piece (index -1: any piece)."""
    known = holder.known_mask != 0 if index < 0 else bool(holder.known_mask >> index & 1)
    if holder.source:
        if holder.known_mask == -1:
            return 2 if (urgent or not peers_linked) else None
        return 0 if known else None
    if known:
        return 0
    return 1 if holder.earlier and urgent else None


def may_serve(holder: Holder, missing_mask: int, urgent: bool, peers_linked: bool) -> bool:
    """Would _tier rank holder for some piece of missing_mask (0: for the header)?

    The caller leaves out of a Want the holders that could serve none of it: in a busy swarm
    most neighbours with room hold only pieces we have or asked for already.
    """
    mask = holder.known_mask
    known = mask != 0 if missing_mask == 0 else mask & missing_mask != 0
    if holder.source:
        return (urgent or not peers_linked) if mask == -1 else known
    return known or (holder.earlier and urgent)


def plan_pieces(
    wants: list[Want],
    room_pieces: dict[str, int],
    now: float,
    urgent_s: float,
    rng: RandomSource,
    peers_linked: bool = True,
) -> list[Ask]:
    """Assign wanted pieces to neighbours; returns the requests, most pressing first.

    room_pieces (how many more pieces each neighbour may have in flight for us) is consumed.
    peers_linked: an uploading neighbour other than the source is linked to us (with room or
    not), so the source is asked only for urgent chunks and its first copies.
    """
    urgent = sorted(
        (w for w in wants if w.deadline_s - now <= urgent_s), key=lambda w: w.deadline_s
    )
    later = sorted(
        (w for w in wants if w.deadline_s - now > urgent_s), key=lambda w: (w.rarity, w.seq)
    )
    asks: list[Ask] = []
    for want in urgent + later:
        is_urgent = want.deadline_s - now <= urgent_s
        if want.need_header:
            best = _pick(want.holders, -1, is_urgent, peers_linked, room_pieces, rng)
            if best is not None:
                room_pieces[best.peer_id] -= 1
                first = _lowest_bit(best.known_mask)
                asks.append(Ask(want.seq, best.peer_id, (first,), True))
            continue
        chosen: dict[str, list[int]] = {}
        stuck_at = dict(want.stuck)
        for index in want.missing:
            best = _pick(
                want.holders, index, is_urgent, peers_linked, room_pieces, rng, stuck_at.get(index)
            )
            if best is None:
                continue
            room_pieces[best.peer_id] -= 1
            chosen.setdefault(best.peer_id, []).append(index)
        for pid, indices in chosen.items():
            asks.append(Ask(want.seq, pid, tuple(indices), False))
    return asks


def _pick(
    holders: tuple[Holder, ...],
    index: int,
    urgent: bool,
    peers_linked: bool,
    room_pieces: dict[str, int],
    rng: RandomSource,
    not_from: str | None = None,
) -> Holder | None:
    best: Holder | None = None
    best_key: tuple[int, int, float] | None = None
    for holder in holders:
        if holder.peer_id == not_from:
            continue
        room = room_pieces.get(holder.peer_id, 0)
        if room <= 0 and not holder.source:
            continue  # (checked first: most holders of a busy swarm have no room)
        tier = _tier(holder, index, urgent, peers_linked)
        if tier is None:
            continue
        if room <= 0 and not (holder.source and tier == 0):
            # A first copy the source advertised to us alone is asked at once, room or not:
            # nobody else can fetch it, and the source serves first copies first.
            continue
        key = (tier, -room, rng.random())
        if best_key is None or key < best_key:
            best, best_key = holder, key
    return best


def _lowest_bit(mask: int) -> int:
    """Index of the lowest set bit (0 for none): the piece to fetch along with a header."""
    if mask <= 0:
        return 0
    return (mask & -mask).bit_length() - 1
