"""Between the chunk store and the playout model: where to start, what plays or is missed when.

Playback (playback.py) is the clock of a player; this module feeds it what the swarm knows.
Rules: start one chunk past the newest a neighbour other than the source holds whole (or
start_behind_chunks behind the newest heard of, while no peer holds one); a start chunk with
pieces held is kept, unless start_give_up_chunks later chunks complete first; a due chunk is
played whole or reported missed and abandoned, never played in part; the window keeps
keep_behind_chunks behind the next chunk to play.
"""

from __future__ import annotations

from collections.abc import Callable

from streamer.swarm.chunks import ChunkBuffer
from streamer.swarm.context import PeerContext
from streamer.swarm.events import ChunkMissed, ChunkPlayed
from streamer.swarm.playback import Playback


class Playout:
    """What one peer has heard of, and (for a relay or viewer) its playback."""

    def __init__(
        self,
        ctx: PeerContext,
        *,
        plays: bool,
        now: float,
        abandon: Callable[[int], None],
    ) -> None:
        self._config, self._store = ctx.config, ctx.store
        self._nbrs, self._outbox = ctx.nbrs, ctx.outbox
        self._abandon = abandon
        """Stop fetching a seq (the peer's: fetching and serving both let go of it)."""
        self.newest_heard: int | None = None
        self._newest_at_peer: int | None = None
        """The newest seq a neighbour other than the source holds whole (the start point)."""
        self._first_heard_s = now
        """When we first heard of any chunk (the start point settles for start_settle_s)."""
        self.playback: Playback | None = None
        if plays:
            config = ctx.config
            self.playback = Playback(
                chunk_duration_s=config.chunk_duration_s,
                start_behind_chunks=config.start_behind_chunks,
                target_lag_s=config.target_lag_s,
                joined_s=now,
                start_margin_s=config.start_margin_s,
                start_sooner_min_lag_s=config.start_sooner_min_lag_s,
                lag_margin_s=config.lag_margin_s,
                lag_step_s=config.lag_step_s,
                stall_step_s=config.stall_step_s,
                max_stall_s=config.max_stall_s,
                max_lag_added_s=config.max_lag_added_s,
                catch_up_margin_s=config.catch_up_margin_s,
                catch_up_step_s=config.catch_up_step_s,
                catch_up_chunks=config.catch_up_chunks,
            )

    def media_start_s(self, seq: int) -> float | None:
        return self._store.media_start_s(seq, self._config.chunk_duration_s)

    def deadline_s(self, seq: int, now: float) -> float:
        """When seq is due (playback only)."""
        pb = self.playback
        assert pb is not None
        return pb.deadline(seq, self.media_start_s(seq), now)

    def next_deadline_s(self, now: float) -> float | None:
        """When the next chunk is due, if playout is running and not waiting at the live edge."""
        pb = self.playback
        if pb is not None and pb.started and pb.next_seq is not None and not pb.waiting_at_edge:
            return pb.deadline(pb.next_seq, self.media_start_s(pb.next_seq), now)
        return None

    def heard(self, seq: int, now: float, at_peer: bool = False) -> None:
        """seq exists (at_peer: a neighbour other than the source holds all of it)."""
        if self.newest_heard is None or seq > self.newest_heard:
            if self.newest_heard is None:
                self._first_heard_s = now
            self.newest_heard = seq
        if at_peer and (self._newest_at_peer is None or seq > self._newest_at_peer):
            self._newest_at_peer = seq
        pb = self.playback
        if pb is None:
            return
        pb.hear_of(seq)
        if pb.started or pb.start_seq is None:
            return
        frontier = self._newest_at_peer
        if frontier is not None:
            # Start where the peers are, one chunk past the newest a peer holds whole. That
            # one has crossed the swarm already (its age is the swarm's spread time), and
            # fetching it would add our fetch to that age; the next one is crossing now and
            # completes for us about when it does for the others.
            past = self._config.start_past_peers_chunks
            start = max(0, min(frontier + past, self.newest_heard))
            settling = now - self._first_heard_s < self._config.start_settle_s
            # A start chunk we hold pieces of is kept: on a slow link, chasing the frontier
            # threw away every start chunk half fetched, and playout never began (test bed:
            # a 0.4 Mbit/s uplink viewer downloaded 30 s of pieces and completed 3 chunks).
            fetching = (chunk := self._store.get(pb.start_seq)) is not None and chunk.have_count > 0
            if (
                pb.start_from_peers is None
                or start < pb.start_seq
                or (start - pb.start_seq > 2 and not fetching)
                or (settling and start > pb.start_seq)
            ):
                pb.start_from_peers = start
                pb.start_seq = pb.next_seq = start
        elif seq - pb.start_seq > pb.start_behind_chunks + 2:
            # Never chase a start point that fell far behind before we could fetch it.
            pb.start_seq = pb.next_seq = seq - pb.start_behind_chunks

    def startup_phases(self, first_link_s: float | None) -> dict[str, float | None] | None:
        """Where startup went, in seconds from joining: the first link open, the first chunk
        heard of, the start chunk complete (playout scheduled), playout begun; and the start
        chunk's release (negative: before we joined). None for a source."""
        pb = self.playback
        if pb is None:
            return None

        def since_join(at_s: float | None) -> float | None:
            return None if at_s is None else at_s - pb.joined_s

        release_s = None if pb.started_at_s is None else pb.started_at_s - pb.start_lag_s
        return {
            "first_link_s": since_join(first_link_s),
            "first_heard_s": since_join(None if self.newest_heard is None else self._first_heard_s),
            "start_complete_s": since_join(pb.start_complete_at_s),
            "play_s": pb.startup_s,
            "start_release_s": since_join(release_s),
        }

    def completed(self, chunk: ChunkBuffer, now: float) -> None:
        """A chunk completed here: playback learns how early (it adapts the lag)."""
        pb = self.playback
        seq = chunk.header.seq
        if pb is not None and pb.started and pb.next_seq is not None and seq >= pb.next_seq:
            self._start_sooner(now)  # first: how early this chunk came depends on it
            pb.completed(pb.deadline(seq, chunk.header.start_us / 1e6, now), now)

    def _start_sooner(self, now: float) -> None:
        """Playout scheduled and the chunk after the start chunk complete: begin sooner. (Runs
        after every input: once playout began, the first test ends it.)"""
        pb = self.playback
        if pb is None or pb.play_start_s is None or now >= pb.play_start_s:
            return
        if pb.start_seq is None:
            return
        if self._store.is_complete(pb.start_seq + 1):
            pb.start_sooner(now)

    def play(self, now: float) -> tuple[bool, int | None]:
        """Start, play or miss what is due now. Returns whether any chunk came due (the plan
        changes then) and the seq below which the window may be evicted, when that floor moved
        up (None otherwise)."""
        pb = self.playback
        if pb is None or pb.start_seq is None:
            return False, None
        if not pb.started:
            start = self._store.get(pb.start_seq)
            if start is None or not start.complete:
                later = [s for s in self._store.complete_seqs() if s > pb.start_seq]
                if len(later) >= self._config.start_give_up_chunks:
                    self._abandon(pb.start_seq)
                    pb.start_seq = pb.next_seq = pb.start_from_peers = later[0]
                    start = self._store.get(later[0])
            if start is not None and start.complete:
                pb.start_if_ready(
                    now, True, start.header.start_us / 1e6, start.header.release_us / 1e6
                )
        self._start_sooner(now)
        any_due = False
        for seq, ok in pb.due(
            now,
            self.media_start_s,
            self._store.is_complete,
            self._may_come,
            self._release_s,
            self._at_edge,
        ):
            any_due = True
            chunk = self._store.get(seq)
            if ok and chunk is not None:
                deadline = pb.deadline(seq, chunk.header.start_us / 1e6, now)
                lag_s = deadline - chunk.header.release_us / 1e6
                pb.lags_s.append(lag_s)
                pieces = [p for p in chunk.pieces if p is not None]
                self._outbox.emit(ChunkPlayed(seq, lag_s, b"".join(pieces)))
            else:
                self._outbox.emit(ChunkMissed(seq))
                self._abandon(seq)
        if pb.next_seq is not None:
            floor = pb.next_seq - self._config.keep_behind_chunks
            if floor > self._store.floor_seq:
                return any_due, floor
        return any_due, None

    def source_restarted(self, first_seq: int) -> None:
        """The broadcaster restarted at first_seq (a new session of the same key): the seqs
        between its last session's newest chunk and first_seq never existed."""
        if self.playback is not None:
            newest = self._store.newest_seq
            self.playback.skip_never_released(
                first_seq if newest is None else newest + 1, first_seq
            )

    def _may_come(self, seq: int) -> bool:
        """Worth stalling for: we hold its header or a neighbour announced some of it."""
        return self._store.get(seq) is not None or any(nb.holds(seq) for nb in self._nbrs.values())

    def _release_s(self, seq: int) -> float | None:
        chunk = self._store.get(seq)
        return None if chunk is None else chunk.header.release_us / 1e6

    def _at_edge(self, seq: int) -> bool:
        """Past the live edge: no header of seq or of any later chunk has arrived."""
        newest = self._store.newest_seq
        return self._store.get(seq) is None and (newest is None or seq > newest)
