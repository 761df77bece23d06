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
    """Pieces of one chunk we asked one neighbour for (and maybe its header)."""

    seq: int
    pieces: set[int]
    """Indices still to come from it."""
    header_pending: bool
    requested_s: float
    last_progress_s: float
    strike_on_timeout: bool
    """It held what we asked for (whole chunk or known pieces): silence then is a stall."""
    asked_s: dict[int, float] = field(default_factory=dict)
    """Piece -> when we asked for it (a piece moved here is not moved on at once)."""


@dataclass(slots=True, eq=False)
class ServeItem:
    """Pieces of one chunk a neighbour asked us for, served in index order as we hold them."""

    peer_id: str
    seq: int
    pieces: list[int]
    header_pending: bool
    order: int
    """Arrival order: among requests for the same seq, older first."""
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
    """Seqs it is receiving: seq -> bitmask of the pieces its last have said it holds."""
    announced_s: dict[int, float] = field(default_factory=dict)
    """seq -> when its first have of seq reached us (it had verified the header by then)."""
    not_from: dict[int, float] = field(default_factory=dict)
    """seq -> time until which we do not ask it for seq again (absent, timed out)."""
    assignments: dict[int, Assignment] = field(default_factory=dict)
    meter: RateMeter = field(default_factory=RateMeter)
    strikes: int = 0
    last_useful_s: float = 0.0
    last_data_s: float = -1.0
    """When its last header or piece (of any seq) reached us: a neighbour that sends us data
    for other chunks is busy, not stalled."""
    control: deque[bytes] = field(default_factory=deque)
    serving: deque[ServeItem] = field(default_factory=deque)
    headers_sent: set[int] = field(default_factory=set)
    """Seqs whose signed header we pushed to it (with our first have of the seq)."""
    bytes_received: int = 0
    bytes_sent: int = 0

    @property
    def is_source(self) -> bool:
        return self.role == Role.SOURCE

    uploads: bool = False
    """Its hello arrived with the UPLOAD capability: it may be asked for pieces."""
    have_due: set[int] = field(default_factory=set)
    """Seqs whose have we still owe it (coalesced: one have per seq per have_interval_s)."""
    have_next_s: float = 0.0
    """Earliest time of our next have to it."""
    sent_mask: dict[int, int] = field(default_factory=dict)
    """Source only: seq -> the pieces we sent it."""
    extra_bytes: dict[int, int] = field(default_factory=dict)
    """Source only: seq -> bytes of copies beyond the first queued or sent to it (its share
    of the copy budget: see SwarmConfig.source_max_share)."""
    fed_by_peers_s: float | None = None
    """Source only: when a have from it last showed a piece we never sent it - it gets data
    from peers, so it is linked into the swarm (a peer everyone dropped, such as a liar, is not)."""

    def holds(self, seq: int) -> bool:
        return seq in self.complete or seq in self.partial

    def known_mask(self, seq: int) -> int:
        """Pieces of seq it surely holds, as a bitmask (-1: all of them)."""
        if seq in self.complete:
            return -1
        return self.partial.get(seq, 0)

    def inflight_pieces(self) -> int:
        return sum(len(a.pieces) + a.header_pending for a in self.assignments.values())

    def room_pieces(self, pipeline_s: float, min_inflight_bytes: int, piece_bytes: int) -> int:
        """How many more pieces we may ask of it now (measured rate x pipeline, with a floor)."""
        rate = self.meter.rate_bytes_per_s or 0.0
        allowed_bytes = max(min_inflight_bytes, int(rate * pipeline_s))
        return allowed_bytes // max(1, piece_bytes) - self.inflight_pieces()

    def forget_below(self, floor_seq: int) -> None:
        self.complete = {s for s in self.complete if s >= floor_seq}
        for table in (
            self.partial,
            self.not_from,
            self.announced_s,
            self.sent_mask,
            self.extra_bytes,
        ):
            for s in [s for s in table if s < floor_seq]:
                del table[s]
        self.headers_sent = {s for s in self.headers_sent if s >= floor_seq}
