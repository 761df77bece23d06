"""What a peer knows about each neighbour: role, what it has, measured throughput, requests.

Rules: all state about one neighbour lives in its Neighbour object, so dropping a neighbour is one
`del`; throughput is measured only while we wait on it (idle time is not slowness).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from streamer.protocol import Capability, Role


class RateMeter:
    """Throughput of a neighbour towards us, in bytes/s, measured over busy periods (EWMA)."""

    SAMPLE_S = 0.25
    ALPHA = 0.3

    def __init__(self) -> None:
        self.rate_bytes_per_s: float | None = None
        self._since: float | None = None
        self._bytes = 0

    def busy(self, now: float) -> None:
        """A request is outstanding from now on (no-op if one already was)."""
        if self._since is None:
            self._since = now
            self._bytes = 0

    def idle(self) -> None:
        self._since = None

    def received(self, size_bytes: int, now: float) -> None:
        if self._since is None:
            return
        self._bytes += size_bytes
        elapsed = now - self._since
        if elapsed >= self.SAMPLE_S:
            sample = self._bytes / elapsed
            old = self.rate_bytes_per_s
            self.rate_bytes_per_s = sample if old is None else old + self.ALPHA * (sample - old)
            self._since = now
            self._bytes = 0


@dataclass(slots=True)
class Assignment:
    """Pieces of one chunk we asked one neighbour for."""

    seq: int
    pieces: set[int] | None
    """Indices still to come; None while the header (and so the count) is unknown."""
    requested_s: float
    last_progress_s: float
    estimate_bytes: int


@dataclass(slots=True, eq=False)
class ServeItem:
    """Pieces of one chunk a neighbour asked us for, served in index order as we hold them."""

    peer_id: str
    seq: int
    pieces: list[int]
    header_pending: bool
    reserved_bytes: int = 0


@dataclass(slots=True)
class Neighbour:
    peer_id: str
    connected_s: float
    role: Role | None = None
    capabilities: Capability = Capability.NONE
    hello_received: bool = False
    complete: set[int] = field(default_factory=set)
    """Seqs it holds in full (buffer map + haves)."""
    partial: dict[int, int] = field(default_factory=dict)
    """Seqs it is receiving: seq -> pieces it had at its last have."""
    not_from: dict[int, float] = field(default_factory=dict)
    """seq -> time until which we do not ask it for seq again (absent, timed out)."""
    assignments: dict[int, Assignment] = field(default_factory=dict)
    meter: RateMeter = field(default_factory=RateMeter)
    strikes: int = 0
    last_useful_s: float = 0.0
    control: deque[bytes] = field(default_factory=deque)
    serving: deque[ServeItem] = field(default_factory=deque)
    headers_sent: set[int] = field(default_factory=set)
    bytes_received: int = 0
    bytes_sent: int = 0

    @property
    def is_source(self) -> bool:
        return self.role == Role.SOURCE

    @property
    def uploads(self) -> bool:
        return self.hello_received and bool(self.capabilities & Capability.UPLOAD)

    def holds(self, seq: int) -> bool:
        return seq in self.complete or seq in self.partial

    def inflight_bytes(self) -> int:
        return sum(a.estimate_bytes for a in self.assignments.values())

    def capacity_bytes(self, pipeline_s: float, min_inflight_bytes: int) -> int:
        """How many more bytes we may ask of it now (measured rate x pipeline, with a floor)."""
        rate = self.meter.rate_bytes_per_s or 0.0
        allowed = max(min_inflight_bytes, int(rate * pipeline_s))
        return allowed - self.inflight_bytes()

    def forget_below(self, floor_seq: int) -> None:
        self.complete = {s for s in self.complete if s >= floor_seq}
        for table in (self.partial, self.not_from):
            for s in [s for s in table if s < floor_seq]:
                del table[s]
