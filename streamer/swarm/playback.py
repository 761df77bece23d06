"""The playout model: where a viewer starts, when each chunk is due, played or skipped, lag.

Rules (the browser player follows the same ones): start `start_behind_chunks` behind the newest seq
heard of; once the start chunk is complete, playback begins target_lag_s after the source released
it (not before now, not after now + target_lag_s); chunk seq is due at
play_start + (its media start - the start chunk's media start); at its deadline a chunk is played if
complete, otherwise skipped (never stall forever). Pure: `now` is passed in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(slots=True)
class Playback:
    chunk_duration_s: float
    start_behind_chunks: int
    joined_s: float
    target_lag_s: float = 0.0
    start_seq: int | None = None
    next_seq: int | None = None
    """The next seq to play (or skip)."""
    play_start_s: float | None = None
    start_media_s: float | None = None
    played: int = 0
    missed: int = 0
    lags_s: list[float] = field(default_factory=list)

    @property
    def started(self) -> bool:
        return self.play_start_s is not None

    @property
    def startup_s(self) -> float | None:
        return None if self.play_start_s is None else self.play_start_s - self.joined_s

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
        (a source clock far ahead of ours must not freeze us) and never before now.
        """
        if self.play_start_s is not None or self.start_seq is None or not start_complete:
            return False
        self.play_start_s = max(now, min(release_s + self.target_lag_s, now + self.target_lag_s))
        self.start_media_s = media_start_s
        return True

    def deadline(self, seq: int, media_start_s: float | None, now: float) -> float:
        """When seq must be complete. Before playout starts, estimated as if it started now."""
        assert self.start_seq is not None
        base = self.play_start_s if self.play_start_s is not None else now
        if media_start_s is not None and self.start_media_s is not None:
            return base + (media_start_s - self.start_media_s)
        return base + (seq - self.start_seq) * self.chunk_duration_s

    def due(
        self,
        now: float,
        media_start_s: Callable[[int], float | None],
        is_complete: Callable[[int], bool],
    ) -> list[tuple[int, bool]]:
        """Advance the playout clock to now: [(seq, played?)] for every chunk that fell due."""
        out: list[tuple[int, bool]] = []
        if self.play_start_s is None or self.next_seq is None:
            return out
        while self.deadline(self.next_seq, media_start_s(self.next_seq), now) <= now:
            seq = self.next_seq
            ok = is_complete(seq)
            if ok:
                self.played += 1
            else:
                self.missed += 1
            out.append((seq, ok))
            self.next_seq += 1
        return out

    @property
    def continuity(self) -> float | None:
        total = self.played + self.missed
        return None if total == 0 else self.played / total
