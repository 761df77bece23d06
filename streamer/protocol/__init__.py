"""The peer wire protocol: message values, the binary codec and the signed chunk header (pure).

docs/protocol.md is the one written spec; tests/vectors/*.json are its golden vectors.
"""

from streamer.protocol.chunk_header import (
    ChunkHeader,
    ChunkSigner,
    decode_chunk_header,
    make_chunk_header,
    piece_count_for,
    split_pieces,
)
from streamer.protocol.codec import Message, decode_message, encode_message, pack_bits, unpack_bits
from streamer.protocol.errors import ProtocolError
from streamer.protocol.messages import (
    ALL_PIECES,
    MAX_BUFFER_MAP_BITS,
    MAX_MESSAGE_BYTES,
    MAX_PIECE_BYTES,
    MAX_PIECES_PER_CHUNK,
    PROTOCOL_VERSION,
    Absent,
    BufferMap,
    Bye,
    ByeReason,
    Cancel,
    Capability,
    Have,
    Hello,
    MsgType,
    Piece,
    Request,
    Role,
    Unknown,
    piece_runs,
)

__all__ = [
    "ALL_PIECES",
    "MAX_BUFFER_MAP_BITS",
    "MAX_MESSAGE_BYTES",
    "MAX_PIECES_PER_CHUNK",
    "MAX_PIECE_BYTES",
    "PROTOCOL_VERSION",
    "Absent",
    "BufferMap",
    "Bye",
    "ByeReason",
    "Cancel",
    "Capability",
    "ChunkHeader",
    "ChunkSigner",
    "Have",
    "Hello",
    "Message",
    "MsgType",
    "Piece",
    "ProtocolError",
    "Request",
    "Role",
    "Unknown",
    "decode_chunk_header",
    "decode_message",
    "encode_message",
    "make_chunk_header",
    "pack_bits",
    "piece_count_for",
    "piece_runs",
    "split_pieces",
    "unpack_bits",
]
