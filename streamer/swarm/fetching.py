"""Fetching: what to ask of whom, and what to do when an answer is late, slow or never comes.

Rules: a missing piece is asked of one neighbour at a time (inflight), and of another only when
that one times out, is too slow for the deadline (rescue), sent nothing of it for move_after_s
(a move), or answered absent (one that timed out or was rescued from is asked again only as
a last resort, for an urgent chunk); a neighbour gets no more requests than its room
(pipeline_s of its measured rate); a request silent towards us for request_timeout_s plus its
neighbour's usual wait times out, and stall_strikes such timeouts drop it; the plan
(streamer.swarm.scheduler) is redone only when an input or the clock may change it (dirty,
replan_at_s, work_pending).
"""

from __future__ import annotations

import math

from streamer.protocol import (
    ALL_PIECES,
    Absent,
    ByeReason,
    Cancel,
    ChunkHeader,
    Piece,
    ProtocolError,
    Request,
    encode_message,
    piece_runs,
)
from streamer.swarm.chunks import PieceResult
from streamer.swarm.context import PeerContext
from streamer.swarm.neighbours import Assignment, Neighbour, drop_seqs_below
from streamer.swarm.planning import Planner
from streamer.swarm.playout import Playout
from streamer.swarm.scheduler import Ask, RandomSource, plan_pieces


class Fetcher:
    """The requests one relay or viewer has out, and the plan of the next ones."""

    def __init__(
        self,
        ctx: PeerContext,
        *,
        playout: Playout,
        rng: RandomSource,
    ) -> None:
        self._config, self._store = ctx.config, ctx.store
        self._nbrs, self._outbox = ctx.nbrs, ctx.outbox
        self._playout = playout
        self._rng = rng
        self._planner = Planner(ctx, playout=playout)
        self._inflight: dict[int, dict[int, str]] = {}
        """seq -> piece index -> the neighbour we asked for it (one at a time per piece)."""
        self._header_from: dict[int, str] = {}
        """seq -> the neighbour we asked for its header (we hold no verified header yet)."""
        self._header_s: dict[int, float] = {}
        """seq -> when we verified its header: neighbours that announced it before are 'earlier'."""
        self._held: dict[int, list[tuple[str, Piece, int]]] = {}
        """seq -> pieces asked of a neighbour that came before the chunk's header (sender, piece,
        size), until the header is stored (take_held) or the window moves past seq."""
        self._held_bytes = 0
        self._dirty = True
        self._replan_at_s: float | None = None
        """When the plan may change by the clock alone (a chunk turning urgent, a not_from
        period ending): a timer then, unless input replans first."""
        self._work_pending = False
        """The last plan left wanted pieces unasked: every timer replans (room frees up with
        inputs that are not all worth a replan of their own)."""
        self.bytes_from_source = 0
        self.bytes_from_peers = 0
        self.bytes_duplicate = 0
        self.timeouts = 0
        self.rescues = 0
        """Urgent requests taken from a holder too slow to meet the deadline."""
        self.moved = 0
        """Pieces asked of another holder after sitting unsent at the first (move_after_s)."""
        self.complete_after_release_s: list[float] = []
        """Per chunk completed here: seconds from its release at the source (clocks agreeing)."""

    # ---------------------------------------------------------------- measures

    def expected_wait_s(self, nb: Neighbour) -> float:
        return nb.expected_wait_s(self._config.initial_response_s)

    def timeout_s(self, nb: Neighbour) -> float:
        """No progress on a request to nb for this long times it out."""
        return self._config.request_timeout_s + self.expected_wait_s(nb)

    def room(self, nb: Neighbour) -> int:
        """How many more pieces we may ask of nb now."""
        cfg = self._config
        return nb.room_pieces(cfg.pipeline_s, cfg.min_inflight_bytes, cfg.piece_size_bytes)

    # ---------------------------------------------------------------- the plan

    def replan(self) -> None:
        """An input changed what we may ask of whom: plan again after it."""
        self._dirty = True

    def replan_by_clock(self, now: float) -> None:
        """A timer: plan again if work was left pending or the clock alone changes the plan.

        Most timers are have flushes and playout deadlines: nothing to replan, unless work is
        pending (without these retries, stalls per viewer went 0.04 -> 0.11 s at 100 peers,
        8 seeds)."""
        if self._work_pending or (self._replan_at_s is not None and now >= self._replan_at_s):
            self._dirty = True

    def run(self, now: float) -> None:
        """Plan and send requests if anything changed since the last plan."""
        if self._dirty:
            self._dirty = False
            self._schedule(now)

    def next_timer_s(self) -> float | None:
        """The next request timeout or clock-driven replan."""
        soonest = math.inf
        request_timeout_s = self._config.request_timeout_s
        initial_response_s = self._config.initial_response_s
        for nb in self._nbrs.values():
            if not nb.assignments:
                continue
            base_s = nb.response.base_s
            timeout_s = request_timeout_s + (initial_response_s if base_s is None else base_s)
            for a in nb.assignments.values():
                due_s = a.last_progress_s + timeout_s
                if due_s < soonest:
                    soonest = due_s
        if self._replan_at_s is not None:
            soonest = min(soonest, self._replan_at_s)
        return None if soonest == math.inf else soonest

    # ---------------------------------------------------------------- answers

    def wants_news(self, seq: int, before: int, after: int) -> bool:
        """Did a have (known mask before -> after) offer something we need and nobody is
        fetching for us yet (a header, or a missing piece)? Only then is it worth rescheduling."""
        if after == before and before != 0:
            return False
        chunk = self._store.get(seq)
        if chunk is None:
            return seq not in self._header_from
        if chunk.complete or chunk.abandoned:
            return False
        offered = chunk.full_mask if after == -1 else after & ~before
        wanted = offered & ~chunk.held_mask
        if not wanted:
            return False
        return any(
            wanted >> i & 1
            for i in range(len(chunk.pieces))
            if i not in self._inflight.get(seq, {})
        )

    def on_absent(self, nb: Neighbour, msg: Absent, now: float) -> None:
        """'Not from me': forget what we asked it for in that range, ask others for a while."""
        nb.not_from[msg.seq] = now + self._config.busy_retry_s
        a = nb.assignments.get(msg.seq)
        if a is None:
            return
        end = msg.first_index + msg.count
        gone = {i for i in a.pieces if msg.first_index <= i < end}
        a.pieces -= gone
        header = a.header_pending
        a.header_pending = False
        self._release_asked(nb.peer_id, msg.seq, gone, header)
        if not a.pieces:
            self._finish_assignment(nb, msg.seq)

    def on_header(self, nb: Neighbour, header: ChunkHeader, now: float) -> tuple[bool, bool]:
        """Store a header: (it is new and verified, so announce it; the plan may change)."""
        result = self._store.add_header(header)
        if result is False:
            self._outbox.drop(nb, f"forged chunk header for seq {header.seq}", ByeReason.FORGED)
            self.take_held(header.seq)  # (the page drops them too: nothing vouches for them)
            return False, True
        seq = header.seq
        nb.last_data_s = now
        nb.announced_s.setdefault(seq, now)
        if self._header_from.get(seq) == nb.peer_id:
            del self._header_from[seq]
        a = nb.assignments.get(seq)
        requested = a is not None and a.header_pending
        if a is not None and requested:
            a.header_pending = False
            nb.progress(a, a.requested_s, now)
            beyond = {i for i in a.pieces if i >= header.piece_count}
            a.pieces -= beyond
            self._release_asked(nb.peer_id, seq, beyond, False)
            if not a.pieces:
                self._finish_assignment(nb, seq)
        if not result:
            return False, requested  # a header we held already (pushed with a have)
        fresh = self._store.get(seq) is not None
        if fresh:
            self._header_s[seq] = now
            nb.last_useful_s = now
        # A header pushed ahead of its sender's first have: that have, right behind it, tells
        # what to ask for. Only a header we asked for, or of a chunk others with room offer,
        # changes the plan now.
        return fresh, requested or any(
            o is not nb and o.holds(seq) and (o.is_source or self.room(o) > 0)
            for o in self._nbrs.values()
        )

    def on_piece(
        self, nb: Neighbour, msg: Piece, size_bytes: int, now: float, replay: bool = False
    ) -> PieceResult | None:
        """Store a piece and settle what we asked for it; None when nb was dropped for it.
        NO_HEADER: not stored (held, if asked of nb, until its header comes: take_held)."""
        seq, index = msg.seq, msg.index
        if not replay:
            nb.bytes_received += size_bytes
            nb.last_data_s = now
            if self._store.get(seq) is None:
                a = nb.assignments.get(seq)
                if a is not None and self._hold(nb, a, msg, size_bytes):
                    nb.progress(a, a.asked_s.get(index, a.requested_s), now)  # unchecked
                    return PieceResult.NO_HEADER
        result = self._store.add_piece(seq, index, msg.count, msg.payload)
        if result is PieceResult.MISMATCH:
            raise ProtocolError(f"piece {seq}/{index}: count {msg.count} disagrees")
        if result is PieceResult.FORGED:
            self._outbox.drop(nb, f"forged piece {seq}/{index}", ByeReason.FORGED)
            return None
        if result is PieceResult.NO_HEADER:
            # Not asked of nb, or no room to hold it: not counted as come.
            self.bytes_duplicate += len(msg.payload)
            return result
        if result is PieceResult.NEW:
            # Metered before the assignment is settled: the last piece of a request ends the
            # meter's busy period, and counted after that it would not count at all.
            nb.meter.received(size_bytes, now)
        a = nb.assignments.get(seq)
        if a is not None and index in a.pieces:
            a.pieces.discard(index)
            nb.progress(a, a.asked_s.get(index, a.requested_s), now)
            nb.strikes = 0
            if not a.pieces and not a.header_pending:
                self._finish_assignment(nb, seq)
        if result is not PieceResult.NEW:
            self.bytes_duplicate += len(msg.payload)
            return result
        if nb.is_source:
            self.bytes_from_source += len(msg.payload)
        else:
            self.bytes_from_peers += len(msg.payload)
        nb.last_useful_s = now
        owner = self._inflight.get(seq, {}).pop(index, None)
        if owner is not None and owner != nb.peer_id:
            self._cancel_piece(owner, seq, index)
        return result

    def completed(self, seq: int, release_s: float, now: float) -> None:
        """seq is complete here: nothing of it is in flight any more."""
        self._inflight.pop(seq, None)
        self._header_from.pop(seq, None)
        self.complete_after_release_s.append(now - release_s)
        self._dirty = True

    def forget(self, nb: Neighbour) -> None:
        """nb is gone: what we asked of it goes elsewhere."""
        for a in nb.assignments.values():
            self._release_asked(nb.peer_id, a.seq, a.pieces, a.header_pending)
        self._dirty = True

    # ---------------------------------------------------------------- late answers

    def time_outs(self, now: float) -> None:
        """Give up requests that made no progress for their neighbour's timeout."""
        for nb in list(self._nbrs.values()):
            timeout_s = self.timeout_s(nb)
            for seq, a in list(nb.assignments.items()):
                due_s = a.last_progress_s + timeout_s
                if nb.peer_id in self._nbrs and now >= due_s:
                    self._time_out(nb, seq, now)

    def rescue_slow(self, now: float) -> None:
        """Take urgent pieces away from a holder too slow to deliver them in time.

        A slow trickle is progress, so the timeout never fires; but if what is left of an
        assignment, at the holder's measured rate, would land after the chunk's deadline, it is
        cancelled there (no strike: the holder is serving, only slowly) and asked elsewhere -
        another holder, or the source, which serves urgent chunks. Only when another neighbour
        we may ask holds some of it (or announced it): otherwise the pieces would be asked of
        the same holder again at once, as a last resort (streamer.swarm.planning), a round trip
        lost. (When a holder given up was left out for 2 x request_timeout_s instead, a relay's
        30 viewers on the bed, whose one holder it was, each missed one or two chunks a run.)
        """
        pb = self._playout.playback
        if pb is None or pb.start_seq is None:
            return
        piece_bytes = self._config.piece_size_bytes
        for nb in list(self._nbrs.values()):
            rate = nb.meter.rate_bytes_per_s
            if not rate:
                continue
            for seq, a in list(nb.assignments.items()):
                if not a.pieces:
                    continue
                if pb.started:
                    deadline = self._playout.deadline_s(seq, now)
                else:
                    deadline = now + self._config.target_lag_s
                if deadline - now > self._config.urgent_s:
                    continue
                if now + len(a.pieces) * piece_bytes / rate <= deadline:
                    continue
                if self._held_elsewhere(nb, seq, now):
                    self._give_up(nb, seq, now)
                    self.rescues += 1

    def _held_elsewhere(self, nb: Neighbour, seq: int, now: float) -> bool:
        """Whether a neighbour other than nb uploads, holds some of seq (or announced it) and
        may be asked for it now."""
        return any(
            o is not nb
            and o.uploads
            and (o.holds(seq) or seq in o.announced_s)
            and o.not_from.get(seq, -1.0) <= now
            and o.gave_up.get(seq, -1.0) <= now
            for o in self._nbrs.values()
        )

    def abandon(self, seq: int) -> bool:
        """Stop fetching seq (played past it). True when an incomplete chunk of it was held
        (requests for it may now get absents)."""
        owners = set(self._inflight.pop(seq, {}).values())
        header_owner = self._header_from.pop(seq, None)
        if header_owner is not None:
            owners.add(header_owner)
        for owner in sorted(owners):  # sorted: a simulation must not depend on hash order
            nb = self._nbrs.get(owner)
            if nb is not None and nb.assignments.pop(seq, None) is not None:
                self._outbox.send(nb, encode_message(Cancel(seq, 0, ALL_PIECES)))
                if not nb.assignments:
                    nb.meter.idle()
        chunk = self._store.get(seq)
        if chunk is not None and not chunk.complete:
            self._store.abandon(chunk)
            return True
        return False

    def seqs_below(self, floor_seq: int) -> list[int]:
        """Seqs below floor_seq we hold or fetch, ascending (to abandon before evicting)."""
        known = {c.header.seq for c in self._store} | set(self._inflight)
        return sorted(s for s in known | set(self._header_from) if s < floor_seq)

    def evict_below(self, floor_seq: int) -> None:
        drop_seqs_below(floor_seq, self._header_s)
        for seq in [s for s in self._held if s < floor_seq]:
            self.take_held(seq)

    def _hold(self, nb: Neighbour, a: Assignment, msg: Piece, size_bytes: int) -> bool:
        """Keep a piece that came before its chunk's header, if it is one we asked nb for (a:
        what we asked nb of that chunk)."""
        if msg.index not in a.pieces:
            return False
        if self._held_bytes + len(msg.payload) > self._config.max_held_piece_bytes:
            return False
        held = self._held.setdefault(msg.seq, [])
        if any(h[1].index == msg.index for h in held):
            return False
        held.append((nb.peer_id, msg, size_bytes))
        self._held_bytes += len(msg.payload)
        return True

    def take_held(self, seq: int) -> list[tuple[str, Piece, int]]:
        """The pieces held for seq (sender, piece, size), now given up by the holder."""
        held = self._held.pop(seq, [])
        self._held_bytes -= sum(len(h[1].payload) for h in held)
        return held

    def _time_out(self, nb: Neighbour, seq: int, now: float) -> None:
        a = nb.assignments.get(seq)
        if a is None:
            return
        self._give_up(nb, seq, now)
        self.timeouts += 1
        if a.strike_on_timeout and nb.last_data_s <= a.last_progress_s:
            # Silent towards us the whole time (no data for any chunk): a stall, not a queue.
            nb.strikes += 1
            if nb.strikes >= self._config.stall_strikes:
                self._outbox.drop(
                    nb, f"stalled: {nb.strikes} requests timed out", ByeReason.STALLED
                )

    def _give_up(self, nb: Neighbour, seq: int, now: float) -> None:
        """Cancel what is left of our request for seq at nb; do not ask it for seq for a while."""
        a = nb.assignments.pop(seq, None)
        if a is None:
            return
        self._release_asked(nb.peer_id, seq, a.pieces, a.header_pending)
        if not nb.assignments:
            nb.meter.idle()
        for first, count in piece_runs(sorted(a.pieces)) or [(0, ALL_PIECES)]:
            self._outbox.send(nb, encode_message(Cancel(seq, first, count)))
        nb.gave_up[seq] = now + 2 * self._config.request_timeout_s
        self._dirty = True

    def _cancel_piece(self, owner: str, seq: int, index: int) -> None:
        """We got piece index elsewhere: owner need not send it any more."""
        other = self._nbrs.get(owner)
        if other is None:
            return
        a = other.assignments.get(seq)
        if a is None or index not in a.pieces:
            return
        a.pieces.discard(index)
        self._outbox.send(other, encode_message(Cancel(seq, index, 1)))
        if not a.pieces and not a.header_pending:
            self._finish_assignment(other, seq)

    def _finish_assignment(self, nb: Neighbour, seq: int) -> None:
        a = nb.assignments.pop(seq, None)
        if a is not None:
            self._release_asked(nb.peer_id, seq, a.pieces, a.header_pending)
        if not nb.assignments:
            nb.meter.idle()
        self._dirty = True

    def _release_asked(self, peer_id: str, seq: int, pieces: set[int], header: bool) -> None:
        """Forget that peer_id was asked for these pieces (and header) of seq."""
        asked = self._inflight.get(seq)
        if asked is not None:
            for i in pieces:
                if asked.get(i) == peer_id:
                    del asked[i]
        if header and self._header_from.get(seq) == peer_id:
            del self._header_from[seq]

    # ---------------------------------------------------------------- planning

    def _schedule(self, now: float) -> None:
        pb = self._playout.playback
        self._replan_at_s = None
        self._work_pending = False
        if pb is None or pb.next_seq is None or self._playout.newest_heard is None:
            return
        self.rescue_slow(now)
        # Neighbours without room still count for rarity, but cannot be asked.
        room = {nb.peer_id: self.room(nb) for nb in self._nbrs.values() if nb.uploads}
        window = self._planner.survey(now, self._inflight, self._header_from, self._header_s, room)
        self._replan_at_s = window.replan_at_s
        wants = window.wants
        if not wants:
            self._work_pending = window.unplannable > 0
            return
        urgent_s = self._config.urgent_s
        asks = plan_pieces(wants, room, now, urgent_s, self._rng, window.peers_linked)
        moved = 0
        for ask in asks:
            moved += self._request(ask, now)
        self.moved += moved
        wanted = sum(len(w.missing) - len(w.stuck) or 1 for w in wants) + window.unplannable
        self._work_pending = sum(len(a.pieces) for a in asks) - moved < wanted

    def _request(self, ask: Ask, now: float) -> int:
        """Send ask; returns how many of its pieces moved here from another neighbour."""
        nb = self._nbrs[ask.peer_id]
        seq = ask.seq
        moved = 0
        asked_before = self._inflight.get(seq, {})
        for i in ask.pieces:
            owner = asked_before.get(i)
            if owner is not None and owner != nb.peer_id:
                self._cancel_piece(owner, seq, i)
                moved += 1
        want_header = ask.want_header
        for first, count in piece_runs(list(ask.pieces)):
            self._outbox.send(nb, encode_message(Request(seq, first, count, want_header)))
            want_header = False
        mask = nb.known_mask(seq)
        holds_all = all(mask >> i & 1 for i in ask.pieces)
        a = nb.assignments.get(seq)
        if a is None:
            a = Assignment(seq, set(), False, now, now, holds_all)
            nb.assignments[seq] = a
        else:
            a.strike_on_timeout = a.strike_on_timeout and holds_all
        a.pieces.update(ask.pieces)
        asked = self._inflight.setdefault(seq, {})
        for i in ask.pieces:
            asked[i] = nb.peer_id
            a.asked_s[i] = now
        if ask.want_header:
            a.header_pending = True
            self._header_from[seq] = nb.peer_id
        nb.meter.busy(now)
        return moved
