"""Chunk integrity and storage: verified headers, verified pieces, a sliding window of seqs.

Rules: nothing enters the store unverified. A header enters only if the source's Ed25519 signature
holds; a piece only if its SHA-256 matches the verified header. So whatever the store holds may be
played and forwarded at once, piece by piece.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from streamer.protocol import ChunkHeader


class HeaderVerifier:
    """Checks chunk header signatures against the broadcaster's raw 32-byte Ed25519 public key.

    Why a class: a simulator running thousands of cores shares one instance, and its small cache
    of already-verified header bytes saves repeating the same signature check for every peer.
    """

    def __init__(
        self, public_key_raw: bytes, epoch: int | None = None, cache_size: int = 256
    ) -> None:
        if len(public_key_raw) != 32:
            raise ValueError("an Ed25519 public key is 32 raw bytes")
        self._key = Ed25519PublicKey.from_public_bytes(public_key_raw)
        self.epoch = epoch
        """The broadcast session whose chunks we accept (None: any): a genuine header signed
        for another session is a replay, refused like a forgery. A restarted broadcast (same
        key, new media description) moves it on."""
        self._cache: OrderedDict[bytes, bool] = OrderedDict()
        self._cache_size = cache_size
        self.checks = 0

    def of_another_session(self, header: ChunkHeader) -> bool:
        """A header signed for another broadcast session than the one we accept."""
        return self.epoch is not None and header.epoch != self.epoch

    def verify(self, header: ChunkHeader) -> bool:
        if self.of_another_session(header):
            return False
        blob = header.encode()
        hit = self._cache.get(blob)
        if hit is not None:
            self._cache.move_to_end(blob)
            return hit
        self.checks += 1
        ok = header.verify(self._key)
        self._cache[blob] = ok
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return ok


class PieceResult(enum.Enum):
    NEW = "new"
    DUPLICATE = "duplicate"
    FORGED = "forged"
    NO_HEADER = "no_header"
    MISMATCH = "mismatch"
    """The piece's count field disagrees with the signed header: a malformed message."""


@dataclass(slots=True)
class ChunkBuffer:
    """One chunk being received (or complete): its verified header and verified pieces."""

    header: ChunkHeader
    pieces: list[bytes | None]
    have_count: int = 0
    held_mask: int = 0
    """Bit i set: piece i is held (the same facts as `pieces`, as one int for fast set maths)."""
    abandoned: bool = False
    """We stopped fetching it (played past it): do not make neighbours wait for its pieces."""
    bytes_total: int = field(init=False)

    def __post_init__(self) -> None:
        self.bytes_total = self.header.total_size

    @property
    def complete(self) -> bool:
        return self.have_count == len(self.pieces)

    def bits(self) -> tuple[bool, ...]:
        return tuple(p is not None for p in self.pieces)

    @property
    def full_mask(self) -> int:
        return (1 << len(self.pieces)) - 1

    def missing(self) -> list[int]:
        return [i for i, p in enumerate(self.pieces) if p is None]


class PiecePool:
    """Verified piece payloads shared by many cores in one process (the simulator), so that
    10,000 simulated peers hold one copy of each piece instead of one each. Only verified
    payloads enter, keyed by (seq, index): equal keys mean equal bytes (the signed hash)."""

    def __init__(self) -> None:
        self._pieces: dict[tuple[int, int], bytes] = {}

    def share(self, seq: int, index: int, payload: bytes) -> bytes:
        return self._pieces.setdefault((seq, index), payload)

    def evict_below(self, floor_seq: int) -> None:
        for key in [k for k in self._pieces if k[0] < floor_seq]:
            del self._pieces[key]

    def __len__(self) -> int:
        return len(self._pieces)


class ChunkStore:
    """Chunks by seq, from a floor up; everything below the floor is forgotten."""

    def __init__(
        self, verifier: HeaderVerifier | None, piece_pool: PiecePool | None = None
    ) -> None:
        self._verifier = verifier
        self._pool = piece_pool
        self._chunks: dict[int, ChunkBuffer] = {}
        self.floor_seq = 0
        self.newest_seq: int | None = None
        """Newest seq whose header verified: the anchor for 'far ahead' checks."""
        self.version = 0
        """Bumped by every change of what the store holds (a chunk, a piece, an abandon, an
        eviction): what is derived from it may be kept while this stays the same."""

    def get(self, seq: int) -> ChunkBuffer | None:
        return self._chunks.get(seq)

    def __iter__(self) -> Iterator[ChunkBuffer]:
        return iter(self._chunks.values())

    def is_complete(self, seq: int) -> bool:
        chunk = self._chunks.get(seq)
        return chunk is not None and chunk.complete

    def complete_seqs(self) -> list[int]:
        return sorted(s for s, c in self._chunks.items() if c.complete)

    def stream_bytes_per_s(self) -> float | None:
        """The stream's rate from the headers held (None without a header of any duration)."""
        size = duration_us = 0
        for chunk in self._chunks.values():
            size += chunk.header.total_size
            duration_us += chunk.header.duration_us
        return size / (duration_us / 1e6) if duration_us > 0 else None

    def media_start_s(self, seq: int, nominal_s: float) -> float | None:
        """seq's media start: from its header; else the end of the nearest header below plus
        nominal_s per chunk between; else the nearest header above less nominal_s per chunk;
        None when no header is known. Chunks may be of any length, so an estimate never
        extrapolates further than from the nearest header."""
        chunk = self._chunks.get(seq)
        if chunk is not None:
            return chunk.header.start_us / 1e6
        below: ChunkHeader | None = None
        above: ChunkHeader | None = None
        for s, c in self._chunks.items():
            if s < seq and (below is None or s > below.seq):
                below = c.header
            elif s > seq and (above is None or s < above.seq):
                above = c.header
        if below is not None:
            end_s = (below.start_us + below.duration_us) / 1e6
            return end_s + (seq - below.seq - 1) * nominal_s
        if above is not None:
            return above.start_us / 1e6 - (above.seq - seq) * nominal_s
        return None

    def add_header(self, header: ChunkHeader) -> bool | None:
        """True: newly stored; None: already known, or of another broadcast session (no-op);
        False: forged (signature fails).

        Another session's header is ignored, not called forged: an old one replayed is useless,
        and a restarted broadcaster's first headers can reach us just before its new media
        description does (the neighbour that forwarded them is honest)."""
        if self._verifier is not None and self._verifier.of_another_session(header):
            return None
        existing = self._chunks.get(header.seq)
        if existing is not None:
            if existing.header.encode() == header.encode():
                return None
            return False if not self._verify(header) else None
        if not self._verify(header):
            return False
        if header.seq < self.floor_seq:
            return None
        self._chunks[header.seq] = ChunkBuffer(header, [None] * header.piece_count)
        self.version += 1
        if self.newest_seq is None or header.seq > self.newest_seq:
            self.newest_seq = header.seq
        return True

    def add_own(self, header: ChunkHeader, pieces: list[bytes]) -> ChunkBuffer:
        """The source stores what it produced and signed itself (no verification needed)."""
        chunk = ChunkBuffer(
            header, list(pieces), have_count=len(pieces), held_mask=(1 << len(pieces)) - 1
        )
        self._chunks[header.seq] = chunk
        self.version += 1
        if self.newest_seq is None or header.seq > self.newest_seq:
            self.newest_seq = header.seq
        return chunk

    def add_piece(self, seq: int, index: int, count: int, payload: bytes) -> PieceResult:
        chunk = self._chunks.get(seq)
        if chunk is None:
            return PieceResult.NO_HEADER
        if count != len(chunk.pieces):
            return PieceResult.MISMATCH
        if chunk.pieces[index] is not None:
            return PieceResult.DUPLICATE
        if not chunk.header.piece_ok(index, payload):
            return PieceResult.FORGED
        if self._pool is not None:
            payload = self._pool.share(seq, index, payload)
        chunk.pieces[index] = payload
        chunk.have_count += 1
        chunk.held_mask |= 1 << index
        self.version += 1
        return PieceResult.NEW

    def abandon(self, chunk: ChunkBuffer) -> None:
        """We stop fetching chunk (it stays, with the pieces we hold, until evicted)."""
        chunk.abandoned = True
        self.version += 1

    def evict_below(self, floor_seq: int) -> list[int]:
        """Forget chunks below floor_seq; returns the evicted seqs."""
        if floor_seq <= self.floor_seq:
            return []
        self.floor_seq = floor_seq
        gone = [s for s in self._chunks if s < floor_seq]
        for s in gone:
            del self._chunks[s]
        self.version += 1
        return gone

    def _verify(self, header: ChunkHeader) -> bool:
        return self._verifier is not None and self._verifier.verify(header)
