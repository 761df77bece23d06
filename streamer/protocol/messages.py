"""Peer wire messages as plain frozen dataclasses (docs/protocol.md is the spec).

Rules: these are values only; no I/O, no validation against swarm state (that is the core's job).
Field names match the spec so the JavaScript port reads the same.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field

PROTOCOL_VERSION = 2
MAX_MESSAGE_BYTES = 65535
"""Every message is at most this long: one data-channel message, safe in every browser."""
PIECE_OVERHEAD_BYTES = 9
MAX_PIECE_BYTES = MAX_MESSAGE_BYTES - PIECE_OVERHEAD_BYTES
MAX_PIECES_PER_CHUNK = 1024
MAX_BUFFER_MAP_BITS = 4096
ALL_PIECES = 0xFFFF
"""A range count meaning 'to the end of the chunk' (ranges are clamped to the piece count)."""
MAX_BYE_TEXT_BYTES = 255
HASH_BYTES = 32
MAX_PEERS_LISTED = 16
"""A peers message lists at most this many ids (a hint list, not a directory)."""
MAX_SIGNAL_PAYLOAD_BYTES = 16384
"""A relayed WebRTC offer, answer or ICE candidate (UTF-8 JSON) is at most this long."""
PEER_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
"""The signaling server's peer-id pattern (signaling_wire.PEER_ID_RE, kept equal by a test):
ids in peers and signal messages are the ids peers know each other by."""
SIGNATURE_BYTES = 64


class MsgType(enum.IntEnum):
    """The type byte that starts every message."""

    HELLO = 0x01
    BUFFER_MAP = 0x02
    HAVE = 0x03
    REQUEST = 0x04
    CHUNK_HEADER = 0x05
    PIECE = 0x06
    CANCEL = 0x07
    ABSENT = 0x08
    BYE = 0x09
    PEERS = 0x0A
    SIGNAL = 0x0B


UNORDERED_TYPES = frozenset({MsgType.PIECE, MsgType.REQUEST})
"""Messages sent on the connection's unordered channel (docs/protocol.md, Transport): each
waits for no earlier message and none waits for it. A lost request then delays only its own
pieces instead of every request sent after it until SCTP retransmits it."""


def travels_unordered(data: bytes) -> bool:
    """Whether an encoded message goes on the unordered channel."""
    return data[0] in UNORDERED_TYPES


class Role(enum.IntEnum):
    """What a peer is in the swarm; the source is the broadcaster."""

    SOURCE = 0
    RELAY = 1
    VIEWER = 2


class Capability(enum.IntFlag):
    """Capabilities bitfield carried by hello."""

    NONE = 0
    UPLOAD = 0x1
    """Serves requests (a viewer behind a strict NAT or with upload disabled clears it)."""
    PARTIAL = 0x2
    """Serves pieces of chunks it is still receiving (forwarding without store-and-forward)."""


class ByeReason(enum.IntEnum):
    """Why a peer closes a neighbour link."""

    NORMAL = 0
    FULL = 1
    PROTOCOL_ERROR = 2
    FORGED = 3
    STALLED = 4
    SHUTDOWN = 5
    VERSION = 6


REQUEST_FLAG_HEADER = 0x01
"""Request flag: send the signed chunk header before the pieces."""


# Value objects, never changed once made. Not frozen=True: mypyc builds a plain dataclass's
# __init__ natively, a frozen one's in Python (16% of a compiled simulation's time).
@dataclass(slots=True)
class Hello:
    version: int
    role: Role
    capabilities: Capability


@dataclass(slots=True)
class BufferMap:
    """Complete chunks held: bit i set means chunk base_seq + i is complete."""

    base_seq: int
    bits: tuple[bool, ...]

    def seqs(self) -> list[int]:
        return [self.base_seq + i for i, bit in enumerate(self.bits) if bit]


@dataclass(slots=True)
class Have:
    """Pieces held of one chunk (all set: complete; some set: still receiving)."""

    seq: int
    pieces: tuple[bool, ...]

    @property
    def piece_count(self) -> int:
        return len(self.pieces)

    @property
    def complete(self) -> bool:
        return all(self.pieces)


@dataclass(slots=True)
class Request:
    """Ask for pieces [first_index, first_index + count) of chunk seq, clamped to its count."""

    seq: int
    first_index: int
    count: int
    want_header: bool


@dataclass(slots=True)
class Piece:
    seq: int
    index: int
    count: int
    payload: bytes = field(repr=False)


@dataclass(slots=True)
class Cancel:
    seq: int
    first_index: int
    count: int


@dataclass(slots=True)
class Absent:
    """'I do not have (or no longer have) these pieces': re-request them elsewhere."""

    seq: int
    first_index: int
    count: int


@dataclass(slots=True)
class Bye:
    reason: ByeReason | int
    text: str = ""


@dataclass(slots=True)
class Peers:
    """Peer exchange: uploading neighbours of the sender (other than the receiver), as hints."""

    peer_ids: tuple[str, ...]


@dataclass(slots=True)
class Signal:
    """A WebRTC offer, answer or ICE candidate relayed through a common neighbour.

    `from_peer` is rewritten by the relay to the id of the neighbour it came from, so the
    receiver knows who is asking through whom; the payload is opaque to the core."""

    to: str
    from_peer: str
    payload: str


@dataclass(slots=True)
class Unknown:
    """A message of a type this version does not know: receivers ignore it."""

    type_byte: int


# ChunkHeader lives in chunk_header.py (it carries signing logic) but is a message too.


def piece_runs(indices: list[int]) -> list[tuple[int, int]]:
    """Ascending piece indices -> [(first, count)] of contiguous runs (one range message each)."""
    runs: list[tuple[int, int]] = []
    for i in indices:
        if runs and runs[-1][0] + runs[-1][1] == i:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((i, 1))
    return runs
