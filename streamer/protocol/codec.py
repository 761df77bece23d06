"""Binary codec for the peer wire protocol (docs/protocol.md): bytes <-> message dataclasses.

Rules: big-endian; decode_message raises only ProtocolError on malformed input and returns Unknown
for a type byte it does not know (receivers ignore those); encode refuses values the format cannot
carry (ValueError), so a bug on our side never puts a malformed message on the wire.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from streamer.protocol.chunk_header import ChunkHeader, decode_chunk_header
from streamer.protocol.errors import ProtocolError
from streamer.protocol.messages import (
    MAX_BUFFER_MAP_BITS,
    MAX_BYE_TEXT_BYTES,
    MAX_MESSAGE_BYTES,
    MAX_PEERS_LISTED,
    MAX_PIECE_BYTES,
    MAX_PIECES_PER_CHUNK,
    MAX_SIGNAL_PAYLOAD_BYTES,
    PEER_ID_PATTERN,
    REQUEST_FLAG_HEADER,
    Absent,
    BufferMap,
    Bye,
    ByeReason,
    Cancel,
    Capability,
    Have,
    Hello,
    MsgType,
    Peers,
    Piece,
    Request,
    Role,
    Signal,
    Unknown,
)

Message = (
    Hello
    | BufferMap
    | Have
    | Request
    | ChunkHeader
    | Piece
    | Cancel
    | Absent
    | Bye
    | Peers
    | Signal
    | Unknown
)

_HELLO = struct.Struct(">BBBI")
_SEQ_COUNT = struct.Struct(">BIH")  # buffer map and have
_RANGE = struct.Struct(">BIHH")  # cancel and absent
_REQUEST = struct.Struct(">BIBHH")
_PIECE = struct.Struct(">BIHH")
_BYE = struct.Struct(">BBB")
_U32_MAX = 0xFFFFFFFF


def pack_bits(bits: Sequence[bool]) -> bytes:
    """MSB-first bitfield: bit i is byte i // 8, mask 0x80 >> (i % 8); padding bits zero."""
    out = bytearray((len(bits) + 7) // 8)
    for i, bit in enumerate(bits):
        if bit:
            out[i >> 3] |= 0x80 >> (i & 7)
    return bytes(out)


def unpack_bits(data: bytes, count: int, what: str) -> tuple[bool, ...]:
    """Inverse of pack_bits; nonzero padding bits are malformed."""
    if len(data) != (count + 7) // 8:
        raise ProtocolError(f"{what}: bitfield of {len(data)} bytes for {count} bits")
    bits = tuple(bool(data[i >> 3] & (0x80 >> (i & 7))) for i in range(count))
    if count % 8 and data[-1] & (0xFF >> (count % 8)):
        raise ProtocolError(f"{what}: nonzero padding bits")
    return bits


def _check_seq(seq: int) -> None:
    if not 0 <= seq <= _U32_MAX:
        raise ValueError(f"seq {seq} does not fit in 32 bits")


def _check_range(first: int, count: int) -> None:
    if not 0 <= first < MAX_PIECES_PER_CHUNK or not 1 <= count <= 0xFFFF:
        raise ValueError(f"piece range first={first} count={count} invalid")


def _peer_id_bytes(peer_id: str) -> bytes:
    """u8 length then the id's ASCII bytes; ValueError for an id outside the pattern."""
    if not PEER_ID_PATTERN.match(peer_id):
        raise ValueError(f"peer id {peer_id!r} does not match the peer-id pattern")
    raw = peer_id.encode("ascii")
    return bytes([len(raw)]) + raw


def _read_peer_id(data: bytes, at: int, what: str) -> tuple[str, int]:
    """The length-prefixed id at `at` and the offset after it; ProtocolError if malformed."""
    if at >= len(data):
        raise ProtocolError(f"{what}: truncated before a peer id")
    end = at + 1 + data[at]
    if end > len(data):
        raise ProtocolError(f"{what}: peer id runs past the end")
    text = bytes(data[at + 1 : end]).decode("latin-1")
    if not PEER_ID_PATTERN.match(text):
        raise ProtocolError(f"{what}: malformed peer id")
    return text, end


def _decode_peers(data: bytes) -> Peers:
    if len(data) < 2:
        raise ProtocolError("peers: truncated")
    count = data[1]
    if count > MAX_PEERS_LISTED:
        raise ProtocolError(f"peers: {count} ids (max {MAX_PEERS_LISTED})")
    ids: list[str] = []
    at = 2
    for _ in range(count):
        peer_id, at = _read_peer_id(data, at, "peers")
        ids.append(peer_id)
    if at != len(data):
        raise ProtocolError(f"peers: {len(data) - at} bytes after the last id")
    return Peers(peer_ids=tuple(ids))


def _decode_signal(data: bytes) -> Signal:
    to, at = _read_peer_id(data, 1, "signal")
    from_peer, at = _read_peer_id(data, at, "signal")
    if at + 2 > len(data):
        raise ProtocolError("signal: truncated before the payload length")
    size = int.from_bytes(data[at : at + 2], "big")
    if size > MAX_SIGNAL_PAYLOAD_BYTES:
        raise ProtocolError(f"signal: payload of {size} bytes (max {MAX_SIGNAL_PAYLOAD_BYTES})")
    _exact(data, at + 2 + size, "signal")
    try:
        payload = bytes(data[at + 2 :]).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError("signal: payload is not UTF-8") from exc
    return Signal(to=to, from_peer=from_peer, payload=payload)


def encode_message(msg: Message) -> bytes:
    """Encode one message; raises ValueError for values the wire format cannot carry."""
    out: bytes
    if isinstance(msg, Hello):
        out = _HELLO.pack(MsgType.HELLO, msg.version, msg.role, int(msg.capabilities))
    elif isinstance(msg, BufferMap):
        _check_seq(msg.base_seq)
        if len(msg.bits) > MAX_BUFFER_MAP_BITS:
            raise ValueError(f"buffer map of {len(msg.bits)} bits (max {MAX_BUFFER_MAP_BITS})")
        out = _SEQ_COUNT.pack(MsgType.BUFFER_MAP, msg.base_seq, len(msg.bits)) + pack_bits(msg.bits)
    elif isinstance(msg, Have):
        _check_seq(msg.seq)
        if not 1 <= len(msg.pieces) <= MAX_PIECES_PER_CHUNK:
            raise ValueError(f"have with {len(msg.pieces)} pieces")
        out = _SEQ_COUNT.pack(MsgType.HAVE, msg.seq, len(msg.pieces)) + pack_bits(msg.pieces)
    elif isinstance(msg, Request):
        _check_seq(msg.seq)
        _check_range(msg.first_index, msg.count)
        flags = REQUEST_FLAG_HEADER if msg.want_header else 0
        out = _REQUEST.pack(MsgType.REQUEST, msg.seq, flags, msg.first_index, msg.count)
    elif isinstance(msg, ChunkHeader):
        _check_seq(msg.seq)
        out = msg.encode()
    elif isinstance(msg, Piece):
        _check_seq(msg.seq)
        if not 0 <= msg.index < msg.count <= MAX_PIECES_PER_CHUNK:
            raise ValueError(f"piece index {msg.index} of {msg.count}")
        if not 1 <= len(msg.payload) <= MAX_PIECE_BYTES:
            raise ValueError(f"piece payload of {len(msg.payload)} bytes")
        out = _PIECE.pack(MsgType.PIECE, msg.seq, msg.index, msg.count) + msg.payload
    elif isinstance(msg, Cancel | Absent):
        _check_seq(msg.seq)
        _check_range(msg.first_index, msg.count)
        kind = MsgType.CANCEL if isinstance(msg, Cancel) else MsgType.ABSENT
        out = _RANGE.pack(kind, msg.seq, msg.first_index, msg.count)
    elif isinstance(msg, Bye):
        text = msg.text.encode("utf-8")[:MAX_BYE_TEXT_BYTES]
        text = text.decode("utf-8", "ignore").encode("utf-8")  # never cut a character in half
        out = _BYE.pack(MsgType.BYE, int(msg.reason), len(text)) + text
    elif isinstance(msg, Peers):
        if len(msg.peer_ids) > MAX_PEERS_LISTED:
            raise ValueError(f"peers with {len(msg.peer_ids)} ids (max {MAX_PEERS_LISTED})")
        ids = b"".join(_peer_id_bytes(p) for p in msg.peer_ids)
        out = bytes([MsgType.PEERS, len(msg.peer_ids)]) + ids
    elif isinstance(msg, Signal):
        payload = msg.payload.encode("utf-8")
        if len(payload) > MAX_SIGNAL_PAYLOAD_BYTES:
            raise ValueError(f"signal payload of {len(payload)} bytes")
        out = (
            bytes([MsgType.SIGNAL])
            + _peer_id_bytes(msg.to)
            + _peer_id_bytes(msg.from_peer)
            + len(payload).to_bytes(2, "big")
            + payload
        )
    else:
        raise ValueError(f"cannot encode {type(msg).__name__}")
    if len(out) > MAX_MESSAGE_BYTES:
        raise ValueError(f"{type(msg).__name__} of {len(out)} bytes (max {MAX_MESSAGE_BYTES})")
    return out


def _exact(data: bytes, size: int, what: str) -> None:
    if len(data) != size:
        raise ProtocolError(f"{what}: length {len(data)}, expected {size}")


def decode_message(data: bytes) -> Message:
    """Decode one message; ProtocolError for anything malformed, Unknown for unknown types."""
    if not data:
        raise ProtocolError("empty message")
    if len(data) > MAX_MESSAGE_BYTES:
        raise ProtocolError(f"oversize message: {len(data)} bytes (max {MAX_MESSAGE_BYTES})")
    kind = data[0]
    if kind == MsgType.HELLO:
        _exact(data, _HELLO.size, "hello")
        _t, version, role, caps = _HELLO.unpack(data)
        if role not in Role._value2member_map_:
            raise ProtocolError(f"hello: unknown role {role}")
        return Hello(version=version, role=Role(role), capabilities=Capability(caps))
    if kind in (MsgType.BUFFER_MAP, MsgType.HAVE):
        what = "buffer map" if kind == MsgType.BUFFER_MAP else "have"
        if len(data) < _SEQ_COUNT.size:
            raise ProtocolError(f"{what}: truncated ({len(data)} bytes)")
        _t, seq, count = _SEQ_COUNT.unpack_from(data)
        bits = unpack_bits(data[_SEQ_COUNT.size :], count, what)
        if kind == MsgType.BUFFER_MAP:
            if count > MAX_BUFFER_MAP_BITS:
                raise ProtocolError(f"buffer map: {count} bits (max {MAX_BUFFER_MAP_BITS})")
            return BufferMap(base_seq=seq, bits=bits)
        if not 1 <= count <= MAX_PIECES_PER_CHUNK:
            raise ProtocolError(f"have: piece count {count} outside 1..{MAX_PIECES_PER_CHUNK}")
        return Have(seq=seq, pieces=bits)
    if kind == MsgType.REQUEST:
        _exact(data, _REQUEST.size, "request")
        _t, seq, flags, first, count = _REQUEST.unpack(data)
        _decode_range_checks(first, count, "request")
        if flags & ~REQUEST_FLAG_HEADER:
            raise ProtocolError(f"request: unknown flags 0x{flags:02x}")
        return Request(
            seq=seq, first_index=first, count=count, want_header=bool(flags & REQUEST_FLAG_HEADER)
        )
    if kind == MsgType.CHUNK_HEADER:
        return decode_chunk_header(data)
    if kind == MsgType.PIECE:
        if len(data) <= _PIECE.size:
            raise ProtocolError(f"piece: truncated ({len(data)} bytes, no payload)")
        _t, seq, index, count = _PIECE.unpack_from(data)
        if not 1 <= count <= MAX_PIECES_PER_CHUNK:
            raise ProtocolError(f"piece: count {count} outside 1..{MAX_PIECES_PER_CHUNK}")
        if index >= count:
            raise ProtocolError(f"piece: index {index} >= count {count}")
        return Piece(seq=seq, index=index, count=count, payload=bytes(data[_PIECE.size :]))
    if kind in (MsgType.CANCEL, MsgType.ABSENT):
        what = "cancel" if kind == MsgType.CANCEL else "absent"
        _exact(data, _RANGE.size, what)
        _t, seq, first, count = _RANGE.unpack(data)
        _decode_range_checks(first, count, what)
        cls = Cancel if kind == MsgType.CANCEL else Absent
        return cls(seq=seq, first_index=first, count=count)
    if kind == MsgType.BYE:
        if len(data) < _BYE.size:
            raise ProtocolError(f"bye: truncated ({len(data)} bytes)")
        _t, reason, text_len = _BYE.unpack_from(data)
        _exact(data, _BYE.size + text_len, "bye")
        try:
            text = bytes(data[_BYE.size :]).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProtocolError("bye: text is not UTF-8") from exc
        known = reason in ByeReason._value2member_map_
        return Bye(reason=ByeReason(reason) if known else reason, text=text)
    if kind == MsgType.PEERS:
        return _decode_peers(data)
    if kind == MsgType.SIGNAL:
        return _decode_signal(data)
    return Unknown(type_byte=kind)


def _decode_range_checks(first: int, count: int, what: str) -> None:
    if first >= MAX_PIECES_PER_CHUNK:
        raise ProtocolError(f"{what}: first index {first} >= {MAX_PIECES_PER_CHUNK}")
    if count == 0:
        raise ProtocolError(f"{what}: empty piece range")
