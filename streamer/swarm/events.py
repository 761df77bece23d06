"""Events the swarm core hands to its driver (aiortc transport, simulator or test)."""

from __future__ import annotations

from dataclasses import dataclass, field

from streamer.protocol import ChunkHeader


# Value objects, never changed once made. Not frozen=True: mypyc builds a plain dataclass's
# __init__ natively, a frozen one's in Python (16% of a compiled simulation's time).
@dataclass(slots=True)
class ChunkComplete:
    """A chunk was received and verified in full (every piece matched the signed header)."""

    seq: int
    header: ChunkHeader = field(repr=False)
    pieces: tuple[bytes, ...] = field(repr=False)

    @property
    def data(self) -> bytes:
        return b"".join(self.pieces)


@dataclass(slots=True)
class ChunkPlayed:
    """The playout clock reached seq and the chunk was there: hand it to the player now."""

    seq: int
    lag_s: float
    """Source release -> played, on the clock the driver passes as now."""
    data: bytes = field(repr=False)


@dataclass(slots=True)
class ChunkMissed:
    """The playout clock reached seq without the chunk: it is skipped, playback goes on."""

    seq: int


@dataclass(slots=True)
class DropNeighbour:
    """Close the link to peer_id (send bye first unless None). The core forgot it already."""

    peer_id: str
    reason: str
    bye: bytes | None


@dataclass(slots=True)
class WantNeighbours:
    """The core has fewer neighbours than it wants: ask the server for `count` candidates (or,
    with the server unreachable, try SwarmPeer.exchange_candidates)."""

    count: int


@dataclass(slots=True)
class PeerSignal:
    """A WebRTC offer, answer or ICE candidate from `from_peer`, relayed by neighbour `via`:
    hand it to the link manager as one from the server, and answer through `via`."""

    from_peer: str
    via: str
    payload: str


Event = ChunkComplete | ChunkPlayed | ChunkMissed | DropNeighbour | WantNeighbours | PeerSignal
