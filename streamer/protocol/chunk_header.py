"""The signed chunk header: the source vouches for a chunk once, peers verify each piece by hash.

Why: a peer must never play or forward bytes the broadcaster did not produce, yet waiting for a
whole chunk before verifying it adds a chunk time of lag per hop. The source signs (Ed25519) a small
header listing the SHA-256 of every piece; a peer verifies the signature once and then each piece
as it arrives, so it can forward a verified piece at once.

Rules: the signature covers every byte of the encoded message before it (type byte included);
integers are big-endian; no I/O here.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from streamer.protocol.errors import ProtocolError
from streamer.protocol.messages import (
    HASH_BYTES,
    MAX_PIECE_BYTES,
    MAX_PIECES_PER_CHUNK,
    SIGNATURE_BYTES,
    MsgType,
)

_FIXED = struct.Struct(">BIIQIQIHH")
"""type, seq, epoch, start_us, duration_us, release_us, total_size, piece_size, piece_count."""
HEADER_FIXED_BYTES = _FIXED.size


def piece_count_for(total_size_bytes: int, piece_size_bytes: int) -> int:
    """Number of pieces a chunk of total_size_bytes splits into (the last one may be short)."""
    return -(-total_size_bytes // piece_size_bytes)


@dataclass(frozen=True, slots=True)
class ChunkHeader:
    """Signed description of one chunk. Times are microseconds (exact integers on the wire)."""

    seq: int
    start_us: int
    """Media time of the chunk's first frame."""
    duration_us: int
    release_us: int
    """The source's clock when it released the chunk (for lag; drivers pass Unix time as now)."""
    total_size: int
    piece_size: int
    piece_hashes: tuple[bytes, ...] = field(repr=False)
    signature: bytes = field(repr=False, default=b"")
    epoch: int = 0
    """The broadcast session (the media description names the current one): a chunk signed for
    an earlier session of the same key is refused, so old chunks cannot be replayed into a
    restarted broadcast whose seqs overlap theirs."""

    @property
    def piece_count(self) -> int:
        return len(self.piece_hashes)

    def piece_length(self, index: int) -> int:
        """Exact byte length of piece index (only the last piece may be shorter)."""
        if index < self.piece_count - 1:
            return self.piece_size
        return self.total_size - self.piece_size * (self.piece_count - 1)

    def signed_bytes(self) -> bytes:
        """The bytes the signature covers: the encoded message up to the signature."""
        fixed = _FIXED.pack(
            MsgType.CHUNK_HEADER,
            self.seq,
            self.epoch,
            self.start_us,
            self.duration_us,
            self.release_us,
            self.total_size,
            self.piece_size,
            self.piece_count,
        )
        return fixed + b"".join(self.piece_hashes)

    def encode(self) -> bytes:
        return self.signed_bytes() + self.signature

    def verify(self, public_key: Ed25519PublicKey) -> bool:
        """True when the signature is the source's over exactly these fields."""
        try:
            public_key.verify(self.signature, self.signed_bytes())
        except InvalidSignature:
            return False
        return True

    def piece_ok(self, index: int, payload: bytes) -> bool:
        """True when payload is exactly piece index as the source produced it."""
        if not 0 <= index < self.piece_count or len(payload) != self.piece_length(index):
            return False
        return hashlib.sha256(payload).digest() == self.piece_hashes[index]


def split_pieces(data: bytes, piece_size_bytes: int) -> list[bytes]:
    """Cut a chunk into pieces of piece_size_bytes (the last may be shorter)."""
    return [data[i : i + piece_size_bytes] for i in range(0, len(data), piece_size_bytes)]


def make_chunk_header(
    *,
    seq: int,
    data: bytes,
    start_us: int,
    duration_us: int,
    release_us: int,
    piece_size: int,
    signing_key: Ed25519PrivateKey,
    epoch: int = 0,
) -> ChunkHeader:
    """Hash and sign a chunk; raises ValueError on a chunk the wire format cannot carry."""
    if not data:
        raise ValueError("a chunk must hold at least one byte")
    if not 1 <= piece_size <= MAX_PIECE_BYTES:
        raise ValueError(f"piece size {piece_size} outside 1..{MAX_PIECE_BYTES}")
    count = piece_count_for(len(data), piece_size)
    if count > MAX_PIECES_PER_CHUNK:
        raise ValueError(f"{len(data)} bytes need {count} pieces (max {MAX_PIECES_PER_CHUNK})")
    hashes = tuple(hashlib.sha256(p).digest() for p in split_pieces(data, piece_size))
    if not 0 <= epoch <= 0xFFFFFFFF:
        raise ValueError(f"epoch {epoch} does not fit in 32 bits")
    unsigned = ChunkHeader(
        seq=seq,
        epoch=epoch,
        start_us=start_us,
        duration_us=duration_us,
        release_us=release_us,
        total_size=len(data),
        piece_size=piece_size,
        piece_hashes=hashes,
    )
    signature = signing_key.sign(unsigned.signed_bytes())
    return ChunkHeader(
        seq=seq,
        epoch=epoch,
        start_us=start_us,
        duration_us=duration_us,
        release_us=release_us,
        total_size=len(data),
        piece_size=piece_size,
        piece_hashes=hashes,
        signature=signature,
    )


@dataclass(frozen=True, slots=True)
class ChunkSigner:
    """The broadcaster's side of chunk headers: its key, its broadcast session (epoch) and the
    piece size. The swarm core only offers chunks signed outside it, in both languages (JS:
    signChunkHeader in chunkheader.js)."""

    signing_key: Ed25519PrivateKey
    piece_size: int
    epoch: int = 0

    def sign(
        self, seq: int, data: bytes, start_s: float, duration_s: float, release_s: float
    ) -> ChunkHeader:
        """The signed header of chunk seq, released at release_s (the source's clock)."""
        return make_chunk_header(
            seq=seq,
            data=data,
            start_us=round(start_s * 1e6),
            duration_us=round(duration_s * 1e6),
            release_us=round(release_s * 1e6),
            piece_size=self.piece_size,
            signing_key=self.signing_key,
            epoch=self.epoch,
        )


def decode_chunk_header(data: bytes) -> ChunkHeader:
    """Parse a CHUNK_HEADER message (type byte included); structure only, not the signature."""
    if len(data) < HEADER_FIXED_BYTES + SIGNATURE_BYTES:
        raise ProtocolError(f"chunk header truncated: {len(data)} bytes")
    (_type, seq, epoch, start_us, duration_us, release_us, total, piece_size, count) = (
        _FIXED.unpack_from(data)
    )
    if not 1 <= count <= MAX_PIECES_PER_CHUNK:
        raise ProtocolError(f"chunk header piece count {count} outside 1..{MAX_PIECES_PER_CHUNK}")
    if not 1 <= piece_size <= MAX_PIECE_BYTES:
        raise ProtocolError(f"chunk header piece size {piece_size} outside 1..{MAX_PIECE_BYTES}")
    if total < 1 or piece_count_for(total, piece_size) != count:
        raise ProtocolError(
            f"chunk header size {total} with piece size {piece_size} does not give {count} pieces"
        )
    expected = HEADER_FIXED_BYTES + count * HASH_BYTES + SIGNATURE_BYTES
    if len(data) != expected:
        raise ProtocolError(f"chunk header length {len(data)}, expected {expected}")
    hashes = tuple(
        bytes(data[HEADER_FIXED_BYTES + i * HASH_BYTES : HEADER_FIXED_BYTES + (i + 1) * HASH_BYTES])
        for i in range(count)
    )
    return ChunkHeader(
        seq=seq,
        epoch=epoch,
        start_us=start_us,
        duration_us=duration_us,
        release_us=release_us,
        total_size=total,
        piece_size=piece_size,
        piece_hashes=hashes,
        signature=bytes(data[expected - SIGNATURE_BYTES :]),
    )
