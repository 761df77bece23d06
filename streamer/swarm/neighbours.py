"""What a peer knows about each neighbour: role, what it has, measured throughput, requests.

Rules: all state about one neighbour lives in its Neighbour object, so dropping a neighbour is one
`del`; throughput is measured only while we wait on it (idle time is not slowness).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from streamer.protocol import Capability, Role


class RateMeter:
    """Throughput of a neighbour towards us, in bytes/s, measured over busy periods (EWMA).

    A sample spans SAMPLE_S of busy time or more, summed over as many busy periods as it takes:
    each period counts from its first request to its last byte. A period is often shorter than
    SAMPLE_S (one piece asked, one round trip), and a meter that dropped such periods kept its
    first sample for good: on the test bed a viewer whose first piece came after a 0.95 s
    retransmission timeout measured 7 KB/s, was allowed one piece in flight by it, so its
    periods stayed one round trip long, and it fetched 0.3 Mbit/s of a 1 Mbit/s stream from a
    relay with room to spare for the rest of the run (relay capacity, 30 viewers 85 ms away).
    """

    SAMPLE_S = 0.25
    ALPHA = 0.3

    def __init__(self) -> None:
        self.rate_bytes_per_s: float | None = None
        self._since: float | None = None
        """When the current busy period began (None: idle)."""
        self._busy_s = 0.0
        """Busy time of earlier periods not yet in a sample."""
        self._bytes = 0
        self._last_s: float | None = None
        """When the last byte came."""

    def busy(self, now: float) -> None:
        """A request is outstanding from now on (no-op if one already was)."""
        if self._since is None:
            self._since = now

    def idle(self) -> None:
        """Nothing is outstanding any more: the period ended with its last byte."""
        if self._since is not None and self._last_s is not None and self._last_s > self._since:
            self._busy_s += self._last_s - self._since
        self._since = None

    def received(self, size_bytes: int, now: float) -> None:
        if self._since is None:
            return
        self._bytes += size_bytes
        self._last_s = now
        elapsed = self._busy_s + (now - self._since)
        if elapsed >= self.SAMPLE_S:
            sample = self._bytes / elapsed
            old = self.rate_bytes_per_s
            self.rate_bytes_per_s = sample if old is None else old + self.ALPHA * (sample - old)
            self._since = now
            self._busy_s = 0.0
            self._bytes = 0


class UplinkMeter:
    """What an uplink can carry: the best recent rate of the upload counter over intervals in
    which uploads waited their turn (the uplink, not the demand, set the pace). Sampled over
    SAMPLE_S or more; the best decays by DECAY per such sample. None until an interval was
    backlogged: an uplink nobody has kept busy yet is not known to be narrow."""

    SAMPLE_S = 1.0
    DECAY = 0.9

    def __init__(self) -> None:
        self.capacity_bytes_per_s: float | None = None
        self._since_s: float | None = None
        self._since_bytes = 0
        self._backlogged = False

    def sample(self, total_bytes: int, backlogged: bool, now: float) -> None:
        """total_bytes uploaded so far; backlogged: uploads are waiting now."""
        if self._since_s is None:
            self._since_s, self._since_bytes = now, total_bytes
            return
        self._backlogged = self._backlogged or backlogged
        elapsed_s = now - self._since_s
        if elapsed_s < self.SAMPLE_S:
            return
        if self._backlogged:
            rate = (total_bytes - self._since_bytes) / elapsed_s
            old = self.capacity_bytes_per_s
            self.capacity_bytes_per_s = rate if old is None else max(rate, old * self.DECAY)
        self._since_s, self._since_bytes = now, total_bytes
        self._backlogged = backlogged


class DeliveredUplinkMeter:
    """What our uplink delivers when it has work: from the bytes the transport has delivered
    (acknowledged: the driver's count, SwarmPeer.uplink_delivered), the rate over each SAMPLE_S
    or more in which, at half the looks or more, a request waited in our upload queue for
    something we hold or the transport held a piece's worth of data or more not yet
    acknowledged; best_bytes_per_s is the best of the last SAMPLES such rates (None until
    there are FIRST_SAMPLES of them).

    The bytes we hand the transport say little of the uplink: a congestion window larger than
    the uplink's queue takes them at once and the shaped queue drops the excess (test bed: a
    0.38 Mbit/s uplink took 0.48 Mbit/s into its transport, and requests seldom waited in the
    core). What was acknowledged cannot exceed what the uplink carried. On the bed (fc71cfe,
    one run, 0.75 Mbit/s stream) the best of five such seconds was 0.29-0.44x the stream for
    the 0.5x uplink and never under 0.58x for the 1x ones."""

    SAMPLE_S = 1.0
    SAMPLES = 5
    FIRST_SAMPLES = 3
    """The first verdict comes after this many, every later one from SAMPLES. On the bed
    (2026-12-07) the 0.5x viewer then stopped uploading 4.3-5.3 s after joining instead of 6.3
    s, in its first seconds of playout, when its own start most needs the uplink; with SAMPLES
    3 throughout, a 1x viewer stopped too, 27 s in."""

    def __init__(self) -> None:
        self._rates: deque[float] = deque(maxlen=self.SAMPLES)
        self._since_s: float | None = None
        self._since_bytes = 0
        self._looks = 0
        self._pressed = 0

    @property
    def best_bytes_per_s(self) -> float | None:
        return max(self._rates) if len(self._rates) >= self.FIRST_SAMPLES else None

    def sample(self, delivered_bytes: int, pressed: bool, now: float) -> None:
        """delivered_bytes: every byte the transport delivered so far; pressed: the uplink has
        work now (a request we can serve waiting in our queue, or a piece's worth not yet
        acknowledged)."""
        if self._since_s is None:
            self._start(delivered_bytes, now)
            return
        self._looks += 1
        self._pressed += pressed
        elapsed_s = now - self._since_s
        if elapsed_s < self.SAMPLE_S:
            return
        if 2 * self._pressed >= self._looks:
            self._rates.append(max(0, delivered_bytes - self._since_bytes) / elapsed_s)
        self._start(delivered_bytes, now)

    def _start(self, delivered_bytes: int, now: float) -> None:
        self._since_s, self._since_bytes = now, delivered_bytes
        self._looks = self._pressed = 0


class ResponseMeter:
    """How soon a neighbour answers a request when nothing else of ours is queued there: a low
    quantile of its last few responses (request sent -> first piece or header back; not the
    shortest, which a piece already on its way when we asked for it again makes too short).

    That is the round trip plus the queue of its uplink (on a home link the transport keeps a
    few hundred ms of data there): the least a request to it can take. Timers that decide a
    piece is late are measured from it, so a far neighbour is not given up on before its
    answer could arrive.
    """

    SAMPLES = 8

    def __init__(self) -> None:
        self._samples: deque[float] = deque(maxlen=self.SAMPLES)
        self.base_s: float | None = None
        self.slow_s: float | None = None
        """The upper quartile of the same responses: as long as a request to it usually
        takes when its queue is long. A piece later than that is stuck there, not queued."""

    def sample(self, response_s: float) -> None:
        self._samples.append(max(0.0, response_s))
        ordered = sorted(self._samples)
        self.base_s = ordered[(len(ordered) - 1) // 4]
        self.slow_s = ordered[(len(ordered) - 1) * 3 // 4]


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
    queued_s: float = 0.0
    """When it arrived."""
    mask: int = 0
    """Bitmask of `pieces`, kept with it (set_pieces, take): a relay with dozens of viewers asks
    'do I hold any of them?' of every queued request for every piece it sends, one AND each."""

    def __post_init__(self) -> None:
        self.mask = _mask_of(self.pieces)

    def set_pieces(self, pieces: list[int]) -> None:
        self.pieces = pieces
        self.mask = _mask_of(pieces)

    def take(self, pos: int) -> int:
        """Remove and return the piece index at pos."""
        index = self.pieces.pop(pos)
        self.mask &= ~(1 << index)
        return index


def _mask_of(indices: list[int]) -> int:
    mask = 0
    for index in indices:
        mask |= 1 << index
    return mask


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
    """seq -> time until which we do not ask it for seq again (it answered absent)."""
    gave_up: dict[int, float] = field(default_factory=dict)
    """seq -> time until which it is asked for seq only as a last resort: we gave up a request
    for seq there (silent, or too slow for the deadline)."""
    assignments: dict[int, Assignment] = field(default_factory=dict)
    meter: RateMeter = field(default_factory=RateMeter)
    response: ResponseMeter = field(default_factory=ResponseMeter)
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
    link_full: bool = False
    """The driver said our link to it takes no more data for now (set_link_full): its requests
    wait in the upload queue without holding an upload slot."""

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
    seed_response: ResponseMeter = field(default_factory=ResponseMeter)
    """Source only: from our super-seeding have to its request for those pieces."""
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

    def progress(self, a: Assignment, asked_s: float, now: float) -> None:
        """A piece (or the header) of assignment a came; asked_s: when we asked for it.

        Nothing of a had come since we asked: the wait was one response time.
        """
        if asked_s >= a.last_progress_s:
            self.response.sample(now - asked_s)
        a.last_progress_s = now

    def expected_wait_s(self, initial_response_s: float) -> float:
        """How long a piece asked of it takes to come when it serves us alone: its response
        time (initial_response_s until one is measured)."""
        base_s = self.response.base_s
        return initial_response_s if base_s is None else base_s

    def room_pieces(self, pipeline_s: float, min_inflight_bytes: int, piece_bytes: int) -> int:
        """How many more pieces we may ask of it now: its measured rate x (pipeline + its
        response time), so that what is in flight covers the round trip; at least one piece
        (min_inflight_bytes before a rate is measured)."""
        rate = self.meter.rate_bytes_per_s or 0.0
        window_s = pipeline_s + (self.response.base_s or 0.0)
        # Once a rate is measured, one piece is the floor: on a slow uplink shared by seven
        # requesters, two pieces each queued 2.4 s of data there (test bed, 0.4 Mbit/s).
        floor = piece_bytes if rate else min_inflight_bytes
        allowed_bytes = max(floor, int(rate * window_s))
        return allowed_bytes // max(1, piece_bytes) - self.inflight_pieces()

    def figures(self) -> dict[str, Any]:
        """What we measured of it, for stats: its role, its throughput towards us, its
        response time, the bytes each way (at the source, also its seed response)."""
        rate = self.meter.rate_bytes_per_s
        base_s = self.response.base_s
        out: dict[str, Any] = {
            "role": self.role.name.lower() if self.role is not None else None,
            "rate_kbps": None if rate is None else round(rate * 8 / 1000, 1),
            "response_ms": None if base_s is None else round(base_s * 1000, 1),
            "bytes_received": self.bytes_received,
            "bytes_sent": self.bytes_sent,
        }
        if (seed_s := self.seed_response.base_s) is not None:
            out["seed_response_ms"] = round(seed_s * 1000, 1)
        return out

    def forget_below(self, floor_seq: int) -> None:
        self.complete = {s for s in self.complete if s >= floor_seq}
        drop_seqs_below(
            floor_seq,
            self.partial,
            self.not_from,
            self.gave_up,
            self.announced_s,
            self.sent_mask,
            self.extra_bytes,
        )
        self.headers_sent = {s for s in self.headers_sent if s >= floor_seq}


def drop_seqs_below(floor_seq: int, *tables: dict[int, Any]) -> None:
    """Delete the entries of seq-keyed tables below floor_seq (the window moved on)."""
    for table in tables:
        for seq in [seq for seq in table if seq < floor_seq]:
            del table[seq]
