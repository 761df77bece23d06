"""What the window wants: for each chunk between playout and the newest heard of, the pieces
missing and the neighbours that may serve them (the input of streamer.swarm.scheduler).

Rules: the window is fetch_ahead_chunks past the next chunk to play, more when playout added
lag; a piece asked of someone is wanted again only when it is stuck there (move_after_s past its
holder's slow response, the upper quartile of its recent ones; never from the source or a holder
whose usual response is slower than move_max_response_s); a
neighbour that answered absent for a chunk is left out until its not_from time; one we gave up a
request for that chunk at (timed out, or rescued from) is left out until its gave_up time,
except as a last resort for an urgent chunk that no other neighbour holds (every holder of a
chunk, the source included, can be given up in turn within a second or two); a neighbour that
announced a chunk before we verified its header is an 'earlier' holder; every holder counts for
rarity, but only one with room (or the source) may be asked; the clock alone changes the plan
when a chunk turns urgent, a not_from or gave_up period ends or a piece becomes stuck
(replan_at_s).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from streamer.swarm.context import PeerContext
from streamer.swarm.playout import Playout
from streamer.swarm.scheduler import Holder, Want, may_serve


@dataclass(slots=True)
class Window:
    """One survey of the window."""

    wants: list[Want]
    replan_at_s: float | None
    """When the plan may change by the clock alone (None: only input changes it)."""
    unplannable: int
    """Pieces (or headers) wanted that no holder with room may serve now."""
    peers_linked: bool
    """Some uploader other than the source is a neighbour."""


class Planner:
    """Surveys one relay's or viewer's window for the scheduler."""

    def __init__(self, ctx: PeerContext, *, playout: Playout) -> None:
        self._config, self._store, self._nbrs = ctx.config, ctx.store, ctx.nbrs
        self._playout = playout

    def survey(
        self,
        now: float,
        inflight: dict[int, dict[int, str]],
        header_from: dict[int, str],
        header_s: dict[int, float],
        room: dict[str, int],
    ) -> Window:
        """The wants of the window (playback started or not: its next chunk is set).

        inflight: seq -> piece -> whom we asked; header_from: seq -> whom we asked for its
        header; header_s: seq -> when we verified its header; room: uploader -> pieces more we
        may ask of it."""
        pb = self._playout.playback
        newest_heard = self._playout.newest_heard
        assert pb is not None and pb.next_seq is not None and newest_heard is not None
        lo = pb.next_seq
        # A lag grown beyond the window would leave the freshest chunks unfetched.
        ahead = self._config.fetch_ahead_chunks + math.ceil(
            max(0.0, pb.lag_added_s) / self._config.chunk_duration_s
        )
        hi = min(newest_heard, lo + ahead)
        # Plain tuples, not attribute look-ups, in the loop below: it runs for every seq of the
        # window for every neighbour after almost every message (the simulator's hot spot).
        # Neighbours without room get no Holder (most of them, in a busy swarm).
        uploaders = [
            (
                nb.peer_id,
                nb.is_source,
                nb.complete,
                nb.partial,
                nb.announced_s,
                nb.not_from,
                nb.gave_up,
                nb.is_source or room[nb.peer_id] > 0,
            )
            for nb in self._nbrs.values()
            if nb.uploads
        ]
        peers_linked = any(not is_source for _, is_source, *_ in uploaders)
        wants: list[Want] = []
        changes_s: list[float] = []
        unplannable = 0
        for seq in range(lo, hi + 1):
            chunk = self._store.get(seq)
            missing: tuple[int, ...] = ()
            missing_mask = 0
            stuck: tuple[tuple[int, str], ...] = ()
            stuck_next_s: float | None = None
            if chunk is not None:
                if chunk.complete:
                    continue
                asked = inflight.get(seq, {})
                if asked:
                    stuck, stuck_next_s = self._stuck_pieces(seq, asked, now)
                moving = {i for i, _ in stuck}
                missing = tuple(
                    i
                    for i, p in enumerate(chunk.pieces)
                    if p is None and (i not in asked or i in moving)
                )
                if stuck_next_s is not None:
                    changes_s.append(stuck_next_s)  # (then pieces may move to another holder)
                if not missing:
                    continue
                for i in missing:
                    missing_mask |= 1 << i
            elif seq in header_from:
                continue
            mine_s = header_s.get(seq)
            deadline = pb.deadline(seq, self._playout.media_start_s(seq), now)
            urgent = deadline - now <= self._config.urgent_s
            holders: list[Holder] = []
            count = 0
            left_out = False
            last_resort: list[Holder] = []
            last_resort_count = 0
            for (
                peer_id,
                is_source,
                complete,
                partial,
                announced_s,
                not_from,
                gave_up,
                askable,
            ) in uploaders:
                if not_from and not_from.get(seq, -1.0) > now:
                    changes_s.append(not_from[seq])
                    continue
                given_up = bool(gave_up) and gave_up.get(seq, -1.0) > now
                if given_up and not urgent:
                    changes_s.append(gave_up[seq])
                    left_out = True
                    continue
                mask = -1 if seq in complete else partial.get(seq, 0)
                announced = None if is_source else announced_s.get(seq)
                earlier = announced is not None and (mine_s is None or announced <= mine_s)
                if mask or earlier:
                    if given_up:
                        last_resort_count += 1
                    else:
                        count += 1
                    if askable:
                        holder = Holder(peer_id, mask, earlier, is_source)
                        if may_serve(holder, missing_mask, urgent, peers_linked):
                            (last_resort if given_up else holders).append(holder)
            if not count:
                holders, count = last_resort, last_resort_count
            if (count or left_out) and not urgent:
                # (a hair past the crossing, so that float rounding cannot make it not urgent)
                changes_s.append(deadline - self._config.urgent_s + 1e-6)
            if holders:
                wants.append(
                    Want(seq, deadline, missing, chunk is None, tuple(holders), count, stuck)
                )
            elif count:
                unplannable += len(missing) or 1
        replan_at_s = min(changes_s) if changes_s else None
        return Window(wants, replan_at_s, unplannable, peers_linked)

    def _stuck_pieces(
        self, seq: int, asked: dict[int, str], now: float
    ) -> tuple[tuple[tuple[int, str], ...], float | None]:
        """(piece, neighbour) for pieces of seq asked of a peer that has sent nothing of them
        for move_after_s beyond its slow response (they wait in its upload queue behind other
        requesters' pieces longer than its queue usually holds them), and when the next of the
        others will be stuck (None: never, as things stand)."""
        stuck: list[tuple[int, str]] = []
        next_s = math.inf
        for owner in sorted(set(asked.values())):  # sorted: no hash order in a simulation
            nb = self._nbrs.get(owner)
            if nb is None or nb.is_source:
                continue
            a = nb.assignments.get(seq)
            if a is None:
                continue
            wait_s = nb.expected_wait_s(self._config.initial_response_s)
            if wait_s >= self._config.move_max_response_s:
                continue
            slow_s = nb.response.slow_s
            move_s = self._config.move_after_s + (wait_s if slow_s is None else slow_s)
            for i in sorted(a.pieces):
                if asked.get(i) == owner:
                    stuck_s = max(a.last_progress_s, a.asked_s.get(i, now)) + move_s
                    if stuck_s <= now:
                        stuck.append((i, owner))
                    elif stuck_s < next_s:
                        next_s = stuck_s
        return tuple(stuck), None if next_s == math.inf else next_s
