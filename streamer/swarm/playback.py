"""The playout model: where a viewer starts, when each chunk is due, played or skipped, lag.

Rules (the browser player follows the same ones): start `start_behind_chunks` behind the newest seq
heard of; once the start chunk is complete, playback begins target_lag_s after the source released
it (not before now + start_margin_s, unless the chunk after it completes first, and then with at
least start_sooner_min_lag_s of lag; not after now + target_lag_s); chunk seq is due at
play_start + (its media start - the start chunk's media start); at its deadline a chunk is played if
complete, otherwise skipped (never stall forever).

The lag adapts to the swarm, as a live player's does: a chunk completing less than lag_margin_s
before its deadline slows playout down (pushes every later deadline back by at most lag_step_s),
and a chunk missing at its deadline stalls playout in stall_step_s steps, up to max_stall_s, before
it is skipped. A stalled chunk counts against continuity like a skipped one; the lag added never
exceeds max_lag_added_s. When the last catch_up_chunks chunks all completed at least
catch_up_margin_s early, playout speeds up (deadlines come catch_up_step_s closer), never below
target_lag_s. Zero steps (the defaults) keep a fixed lag.

Chunks may be of any length (an encoder's GOPs are 1-10 s, scene cuts, a stalled input). A chunk
is released when its last frame is shot, so a long one comes later than the media clock says: a
missing chunk whose header shows it was released less than the playout lag before its deadline
re-anchors playout (every later deadline moves back until it gets that lag) instead of stalling
or skipping; and a chunk past the live edge (no header of it or of any later chunk has arrived)
is waited for, never skipped, since nothing after it exists yet. Re-anchoring is the source's
timing, not the swarm's: it counts in reanchored_s, not in stalls or lag_added_s.
Pure: `now` is passed in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

MAX_NOT_ON_TIME = 32


@dataclass(slots=True)
class Playback:
    chunk_duration_s: float
    start_behind_chunks: int
    joined_s: float
    target_lag_s: float = 0.0
    start_seq: int | None = None
    start_from_peers: int | None = None
    """The start seq chosen from what neighbours hold whole (None: not chosen that way yet)."""
    next_seq: int | None = None
    """The next seq to play (or skip)."""
    play_start_s: float | None = None
    start_media_s: float | None = None
    start_margin_s: float = 0.0
    """Playout begins at least this long after the start chunk completes: the next chunks cross
    the swarm about as late as it did, and a start on the edge would stall on them."""
    start_sooner_min_lag_s: float = 0.0
    """...unless the chunk after it completes first: then playout begins with at least this lag
    (start_sooner)."""
    lag_margin_s: float = 0.0
    lag_step_s: float = 0.0
    stall_step_s: float = 0.0
    max_stall_s: float = 0.0
    max_lag_added_s: float = 0.0
    catch_up_margin_s: float = 0.0
    catch_up_step_s: float = 0.0
    catch_up_chunks: int = 0
    played: int = 0
    """Played on time."""
    late: int = 0
    """Played after stalling for it."""
    missed: int = 0
    """Skipped."""
    lag_added_s: float = 0.0
    """How far playout has been pushed back since it started (slow-downs and stalls)."""
    stall_s: float = 0.0
    started_at_s: float | None = None
    """When playout began (play_start_s moves when the lag adapts; this does not)."""
    start_lag_s: float = 0.0
    """The lag playout began with: the lag now is start_lag_s + lag_added_s."""
    start_complete_at_s: float | None = None
    """When the start chunk was complete and playout was scheduled (for the startup phases)."""
    reanchored_s: float = 0.0
    """How far playout was pushed back for chunks the source released late (long chunks)."""
    reanchors: int = 0
    waiting_at_edge: bool = False
    """The next chunk is past the live edge: only input (its header) can move playout on."""
    _edge_seq: int | None = None
    """The chunk playout last waited for at the live edge: when it comes, playout resumes."""
    paused_s: float = 0.0
    """Time the picture stood still at the live edge (the source sent nothing new)."""
    longest_pause_s: float = 0.0
    _paused_since_s: float | None = None
    _never_released: tuple[int, int] = (0, 0)
    """Seqs [lo, hi) a restarted broadcast skipped: they never existed, so they count nowhere."""
    lags_s: list[float] = field(default_factory=list)
    not_on_time: list[dict[str, float | int | bool]] = field(default_factory=list)
    """The first MAX_NOT_ON_TIME chunks played late or skipped: seq, seconds after playout
    began, whether it played (a diagnosis of when a swarm falls behind: flash crowd, steady)."""
    _stalled_seq: int | None = None
    _stalled_for_s: float = 0.0
    _early_in_a_row: int = 0

    @property
    def started(self) -> bool:
        return self.play_start_s is not None

    @property
    def startup_s(self) -> float | None:
        return None if self.started_at_s is None else self.started_at_s - self.joined_s

    def hear_of(self, newest_seq: int) -> None:
        """Choose the start point the first time we hear of any chunk."""
        if self.start_seq is None:
            self.start_seq = max(0, newest_seq - self.start_behind_chunks)
            self.next_seq = self.start_seq

    def start_if_ready(
        self, now: float, start_complete: bool, media_start_s: float, release_s: float
    ) -> bool:
        """Schedule playout once the start chunk is complete; True when it was scheduled now.

        Playout begins target_lag_s after the source released the start chunk, so every later
        chunk has about target_lag_s to cross the swarm; never later than now + target_lag_s
        (a source clock far ahead of ours must not freeze us) and never before now +
        start_margin_s (a start chunk that took longer than the target to reach us says the
        next ones will too: starting the moment it completes would stall on them).
        """
        if self.play_start_s is not None or self.start_seq is None or not start_complete:
            return False
        latest_s = now + self.target_lag_s
        earliest_s = now + self.start_margin_s
        self.play_start_s = max(earliest_s, min(release_s + self.target_lag_s, latest_s))
        self.started_at_s = self.play_start_s
        self.start_lag_s = self.play_start_s - release_s
        self.start_complete_at_s = now
        self.start_media_s = media_start_s
        return True

    def start_sooner(self, now: float) -> bool:
        """The chunk after the start chunk is complete too, before playout began: it need not
        wait out start_margin_s (that margin is for the next chunks, and the first of them is
        here). It begins now, or start_sooner_min_lag_s after the start chunk's release if that
        is later (the chunks after it still have to cross the swarm). A start chunk released
        before we joined took our join and fetch to complete, not the swarm's crossing time,
        and the margin added to that only added lag. True when moved."""
        if self.play_start_s is None or now >= self.play_start_s or self.next_seq != self.start_seq:
            return False
        release_s = self.play_start_s - self.start_lag_s
        sooner_s = max(now, release_s + self.start_sooner_min_lag_s)
        if sooner_s >= self.play_start_s:
            return False
        self.play_start_s = self.started_at_s = sooner_s
        self.start_lag_s = sooner_s - release_s
        return True

    def deadline(self, seq: int, media_start_s: float | None, now: float) -> float:
        """When seq must be complete. Before playout starts, estimated as if it started now."""
        assert self.start_seq is not None
        base = self.play_start_s if self.play_start_s is not None else now
        if media_start_s is not None and self.start_media_s is not None:
            return base + (media_start_s - self.start_media_s)
        return base + (seq - self.start_seq) * self.chunk_duration_s

    def _push_back(self, by_s: float) -> float:
        """Delay every later deadline by up to by_s (within max_lag_added_s); returns the delay."""
        if self.play_start_s is None:
            return 0.0
        step = max(0.0, min(by_s, self.max_lag_added_s - self.lag_added_s))
        self.play_start_s += step
        self.lag_added_s += step
        return step

    def completed(self, deadline_s: float, now: float) -> float:
        """A chunk completed at now, due at deadline_s: slow down if that was a close call,
        speed up after a run of early ones. Returns the lag added (negative: removed)."""
        margin_s = deadline_s - now
        if not self.started or margin_s < 0:
            return 0.0
        if margin_s < self.lag_margin_s:
            self._early_in_a_row = 0
            return self._push_back(min(self.lag_margin_s - margin_s, self.lag_step_s))
        if self.catch_up_chunks <= 0 or margin_s < self.catch_up_margin_s:
            self._early_in_a_row = 0
            return 0.0
        self._early_in_a_row += 1
        if self._early_in_a_row < self.catch_up_chunks or self.play_start_s is None:
            return 0.0
        lag_s = self.start_lag_s + self.lag_added_s  # (re-anchoring is kept: the source's timing)
        step = min(self.catch_up_step_s, lag_s - self.target_lag_s)
        if step <= 0:
            return 0.0
        self.play_start_s -= step
        self.lag_added_s -= step
        return -step

    def due(
        self,
        now: float,
        media_start_s: Callable[[int], float | None],
        is_complete: Callable[[int], bool],
        may_come: Callable[[int], bool] | None = None,
        release_s: Callable[[int], float | None] | None = None,
        at_edge: Callable[[int], bool] | None = None,
    ) -> list[tuple[int, bool]]:
        """Advance the playout clock to now: [(seq, played?)] for every chunk that fell due.

        may_come(seq) False (nobody has announced it: a gap in the stream, such as a broadcaster
        restart) skips a missing chunk at once instead of stalling for it. release_s(seq) (its
        header's release time, None if unknown) re-anchors playout for a chunk released late;
        at_edge(seq) True (past the live edge) waits for it: see the module's rules."""
        out: list[tuple[int, bool]] = []
        self.waiting_at_edge = False
        if self.play_start_s is None or self.next_seq is None:
            return out
        while True:
            seq = self.next_seq
            deadline_s = self.deadline(seq, media_start_s(seq), now)
            if deadline_s > now:
                break
            ok = is_complete(seq)
            if not ok and at_edge is not None and at_edge(seq):
                self.waiting_at_edge = True
                self._edge_seq = seq
                if self._paused_since_s is None:
                    self._paused_since_s = deadline_s
                break
            if not ok and self._never_released[0] <= seq < self._never_released[1]:
                self.next_seq += 1
                continue
            resumed = self._edge_seq == seq
            if (
                (not ok or resumed)
                and release_s is not None
                and self._reanchor(deadline_s, release_s(seq), now if resumed else None)
            ):
                continue
            stalled = self._stalled_seq == seq
            if (
                not ok
                and self.stall_step_s > 0
                and (may_come is None or may_come(seq))
                and (not stalled or self._stalled_for_s < self.max_stall_s)
            ):
                step = self._push_back(self.stall_step_s)
                if step > 0:
                    if not stalled:
                        self._stalled_seq, self._stalled_for_s = seq, 0.0
                    self._stalled_for_s += step
                    self.stall_s += step
                    continue
            if ok and stalled:
                self.late += 1
            elif ok:
                self.played += 1
            else:
                self.missed += 1
            if (not ok or stalled) and len(self.not_on_time) < MAX_NOT_ON_TIME:
                assert self.started_at_s is not None
                self.not_on_time.append(
                    {"seq": seq, "after_start_s": round(now - self.started_at_s, 3), "played": ok}
                )
            if ok and self._paused_since_s is not None:
                pause_s = now - self._paused_since_s
                self.paused_s += pause_s
                self.longest_pause_s = max(self.longest_pause_s, pause_s)
                self._paused_since_s = None
            out.append((seq, ok))
            self.next_seq += 1
        return out

    def skip_never_released(self, lo_seq: int, hi_seq: int) -> None:
        """A restarted broadcast starts at hi_seq: seqs from lo_seq up to it never existed."""
        self._never_released = (lo_seq, hi_seq)

    def _reanchor(
        self, deadline_s: float, release_s: float | None, resumed_s: float | None = None
    ) -> bool:
        """A chunk released less than the lag playout keeps before deadline_s (a long chunk:
        released when its last frame was shot) moves every later deadline back so that it gets
        that lag; one that playout waited for at the live edge (resumed_s: now) is due no
        earlier than now, since the picture froze until it came. True when playout moved."""
        if release_s is None or self.play_start_s is None:
            return False
        floor_s = release_s + self.start_lag_s + max(0.0, self.lag_added_s)
        if resumed_s is not None:
            floor_s = max(floor_s, resumed_s)
        if floor_s <= deadline_s + 1e-9:
            return False
        self.play_start_s += floor_s - deadline_s
        self.reanchored_s += floor_s - deadline_s
        self.reanchors += 1
        return True

    @property
    def continuity(self) -> float | None:
        """Share of the chunks due that played on time (late and skipped ones do not)."""
        total = self.played + self.late + self.missed
        return None if total == 0 else self.played / total
