"""The source's first copies: which uploader gets each piece of a fresh chunk, the copy budget.

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
  still gets a piece every third chunk, and nobody is starved of the chance to measure again;
- a first copy is always served to the neighbour it was offered to; copies beyond it come out of
  a per-chunk budget of (source_max_copies - 1) chunk sizes, at most source_max_share of it per
  neighbour, so fallback requests cannot crowd first copies out;
- a first copy that has not spread (fewer than source_spread_holders neighbours announced it
  without getting it from us) is offered again to one more linked uploader per
  source_reseed_interval_s while the chunk is younger than source_reseed_window_s.
"""

from __future__ import annotations

from collections.abc import Mapping

from streamer.swarm.announcing import Announcer, header_bits
from streamer.swarm.chunks import ChunkBuffer
from streamer.swarm.context import PeerContext
from streamer.swarm.neighbours import Neighbour, ServeItem, drop_seqs_below


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


class Seeder:
    """The source's side of a fresh chunk: first copies, the whole-chunk announce that follows
    them, offers again of first copies that did not spread, and the copy budget."""

    def __init__(
        self,
        ctx: PeerContext,
        *,
        announcer: Announcer,
    ) -> None:
        self._config, self._store = ctx.config, ctx.store
        self._nbrs = ctx.nbrs
        self._announcer = announcer
        self._announce_later: dict[int, tuple[float, list[str]]] = {}
        """seq -> (when, to whom) the whole-chunk have goes, after the first copies."""
        self._reseed_at: dict[int, float] = {}
        """seq -> when to look again for first copies that have not spread (see reseed_stuck)."""
        self._reserved: dict[int, int] = {}
        """seq -> bytes of copies beyond the first that are queued or sent (the budget)."""
        self._target: dict[int, dict[int, str]] = {}
        """seq -> piece index -> the neighbour we super-seeded it to (its first copy)."""
        self._reseeded: dict[int, dict[int, set[str]]] = {}
        """seq -> piece index -> neighbours offered it again since its first copy did not
        spread (see reseed_stuck): their copies are first copies too, outside the budget."""
        self._turn = 0
        self._sent_s: dict[int, dict[str, float]] = {}
        """seq -> neighbour -> when we super-seeded it pieces of seq (until it asks for them)."""
        self._credit: dict[str, float] = {}
        """Weighted round robin of first copies over uploaders (see assign_first_copies)."""
        self._spread: dict[int, dict[int, int]] = {}
        """seq -> piece index -> how many neighbours announced it without getting it from us:
        at source_spread_holders, its first copy is spreading through the swarm."""

    def publish(self, seq: int, piece_count: int, now: float) -> None:
        """A fresh chunk: offer its first copies now, the whole chunk to everyone a little later."""
        self.super_seed(seq, piece_count, now)
        if self._nbrs:
            when = now + self._config.source_announce_delay_s
            self._announce_later[seq] = (when, list(self._nbrs))

    def evict_below(self, floor_seq: int) -> None:
        drop_seqs_below(
            floor_seq,
            self._reserved,
            self._target,
            self._reseeded,
            self._spread,
            self._reseed_at,
            self._sent_s,
        )

    def super_seed(self, seq: int, piece_count: int, now: float) -> None:
        """Advertise each piece of a fresh chunk to one uploading neighbour, different pieces to
        different neighbours, so the first copies land on many peers and their uplinks all start
        working at once; more of them on neighbours that ask soon for what they are offered.

        Relays get no preference by role: a relay may be upload-capped, and a first copy stuck
        behind a slow uplink delays that piece for everyone. Only neighbours linked into the
        swarm are seeded (see source_seed_proof_s); if none is, all uploaders are.
        """
        proof_s = self._config.source_seed_proof_s
        uploaders = [nb for nb in self._nbrs.values() if nb.uploads and not nb.is_source]
        linked = [
            nb
            for nb in uploaders
            if now - nb.connected_s < proof_s
            or (nb.fed_by_peers_s is not None and now - nb.fed_by_peers_s < proof_s)
        ]
        order = sorted(linked or uploaders, key=lambda nb: nb.peer_id)
        if not order:
            return
        responses = {nb.peer_id: nb.seed_response.base_s for nb in order}
        weights = seed_weights(
            responses, self._config.source_seed_response_floor_s, self._config.initial_response_s
        )
        bits: dict[str, list[bool]] = {}
        targets = self._target.setdefault(seq, {})
        for index, pid in enumerate(assign_first_copies(weights, piece_count, self._credit)):
            bits.setdefault(pid, [False] * piece_count)[index] = True
            targets[index] = pid
        self._turn += piece_count
        sent = self._sent_s.setdefault(seq, {})
        for pid, mask_bits in bits.items():
            sent[pid] = now
            self._announcer.send_have(self._nbrs[pid], seq, tuple(mask_bits))

    def reseed_stuck(self, seq: int, piece_count: int, now: float) -> None:
        """Offer pieces whose first copy has not spread yet to one more linked uploader each.

        A first copy can sit at a neighbour whose uplink is slow or queued; until the whole-chunk
        announce, nobody else may know it exists, and after it everyone would wait for it to
        turn urgent. The offer is repeated every source_reseed_interval_s while the chunk is
        young, each time to an uploader not offered it yet (one may leave or be slow too). Such
        a copy is served even when fallback requests have spent the budget (see admit).
        """
        spread = self._spread.get(seq, {})
        enough = self._config.source_spread_holders
        targets = self._target.get(seq, {})
        stuck = [i for i in range(piece_count) if spread.get(i, 0) < enough and i in targets]
        if not stuck:
            return
        proof_s = self._config.source_seed_proof_s
        order = sorted(
            (
                nb
                for nb in self._nbrs.values()
                if nb.uploads
                and not nb.is_source
                and nb.fed_by_peers_s is not None
                and now - nb.fed_by_peers_s < proof_s
            ),
            key=lambda nb: nb.peer_id,
        )
        bits: dict[str, list[bool]] = {}
        reseeded = self._reseeded.setdefault(seq, {})
        for n, index in enumerate(stuck):
            tried = reseeded.setdefault(index, set())
            first = targets[index]
            choices = [
                nb
                for nb in order
                if nb.peer_id != first and nb.peer_id not in tried and seq not in nb.complete
            ]
            choices = [nb for nb in choices if not nb.known_mask(seq) >> index & 1]
            if not choices:
                continue
            pick = choices[(self._turn + n) % len(choices)]
            tried.add(pick.peer_id)
            bits.setdefault(pick.peer_id, [False] * piece_count)[index] = True
        for pid, mask_bits in bits.items():
            self._announcer.send_have(self._nbrs[pid], seq, tuple(mask_bits))

    def handle_timer(self, now: float) -> None:
        """Whole-chunk announces that are due, and offers again of first copies not spread."""
        interval_s = self._config.source_reseed_interval_s
        for seq, (when, pids) in list(self._announce_later.items()):
            if when <= now:
                del self._announce_later[seq]
                chunk = self._store.get(seq)
                if chunk is None:
                    continue
                self.reseed_stuck(seq, chunk.header.piece_count, now)
                self._reseed_at[seq] = now + interval_s
                bits = header_bits(chunk.header.piece_count)
                for pid in pids:
                    target = self._nbrs.get(pid)
                    if target is not None and seq not in target.complete:
                        self._announcer.send_have(target, seq, bits)
        for seq, when in list(self._reseed_at.items()):
            if when <= now:
                chunk = self._store.get(seq)
                window_s = self._config.source_reseed_window_s
                if chunk is None or now - chunk.header.release_us / 1e6 > window_s:
                    del self._reseed_at[seq]
                    continue
                self.reseed_stuck(seq, chunk.header.piece_count, now)
                self._reseed_at[seq] = now + interval_s

    def next_timer_s(self) -> float | None:
        times = [when for when, _ in self._announce_later.values()]
        times.extend(self._reseed_at.values())
        return min(times) if times else None

    def heard_have(self, nb: Neighbour, seq: int, mask: int, before: int, now: float) -> None:
        """nb announced pieces of seq (mask; it was known to hold before): pieces it did not
        get from us are spreading, and nb is fed by peers."""
        fed = mask & ~nb.sent_mask.get(seq, 0)
        if fed:
            nb.fed_by_peers_s = now
            news = fed & ~before  # (each neighbour counts once per piece)
            if news:
                counts = self._spread.setdefault(seq, {})
                for i in range(news.bit_length()):
                    if news >> i & 1:
                        counts[i] = counts.get(i, 0) + 1

    def asked(self, nb: Neighbour, seq: int, now: float) -> None:
        """nb asked for pieces of seq: how soon after our offer (its seed response)."""
        sent_s = self._sent_s.get(seq, {}).pop(nb.peer_id, None)
        if sent_s is not None:
            nb.seed_response.sample(now - sent_s)

    def served(self, nb: Neighbour, seq: int, index: int) -> None:
        """We sent piece index of seq to nb (its haves of it then do not count as spread)."""
        nb.sent_mask[seq] = nb.sent_mask.get(seq, 0) | 1 << index

    def admit(
        self, nb: Neighbour, chunk: ChunkBuffer, indices: list[int]
    ) -> tuple[list[int], list[int], int]:
        """Which requested pieces the source serves: (served, refused, bytes of extra copies).

        A first copy (a piece super-seeded to this very neighbour) is always served; the budget
        bounds the copies beyond it, so fallback requests cannot crowd it out. (A piece
        super-seeded to nobody has its first copy claimed by its first requester.) A piece
        offered again because its first copy did not spread is served like a first copy, but
        counts against the budget, leaving less for fallback. No neighbour takes more than
        source_max_share of the budget.
        """
        seq = chunk.header.seq
        seeded = self._target.setdefault(seq, {})
        reseeded = self._reseeded.get(seq, {})
        budget = (self._config.source_max_copies - 1.0) * chunk.header.total_size
        share = self._config.source_max_share * budget
        total = self._reserved.get(seq, 0)
        mine = nb.extra_bytes.get(seq, 0)
        served: list[int] = []
        refused: list[int] = []
        for i in indices:
            if seeded.setdefault(i, nb.peer_id) != nb.peer_id:
                size = chunk.header.piece_length(i)
                offered_again = nb.peer_id in reseeded.get(i, ())
                if not offered_again and (total + size > budget or mine + size > share):
                    refused.append(i)
                    continue
                total += size
                mine += size
            served.append(i)
        reserved = mine - nb.extra_bytes.get(seq, 0)
        self._reserved[seq] = total
        nb.extra_bytes[seq] = mine
        return served, refused, reserved

    def release(self, item: ServeItem, dropped: list[int] | None = None) -> None:
        """Give back the budget for pieces of item it will not send after all (all of them, or
        dropped)."""
        if not item.reserved_bytes:
            return
        chunk = self._store.get(item.seq)
        if chunk is None:
            return
        pieces = item.pieces if dropped is None else dropped
        back = min(item.reserved_bytes, sum(chunk.header.piece_length(i) for i in pieces))
        item.reserved_bytes -= back
        self._reserved[item.seq] = self._reserved.get(item.seq, 0) - back
        nb = self._nbrs.get(item.peer_id)
        if nb is not None and item.seq in nb.extra_bytes:
            nb.extra_bytes[item.seq] -= back
