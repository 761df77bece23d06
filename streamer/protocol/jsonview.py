"""Messages as plain JSON-able dicts: the field view of the golden vectors (and for logs).

Bitfields are strings of '0'/'1' (bit i is character i); byte strings are lowercase hex.
"""

from __future__ import annotations

from typing import Any

from streamer.protocol.chunk_header import ChunkHeader
from streamer.protocol.codec import Message
from streamer.protocol.messages import (
    Absent,
    BufferMap,
    Bye,
    ByeReason,
    Cancel,
    Capability,
    Have,
    Hello,
    Peers,
    Piece,
    Request,
    Role,
    Signal,
    Unknown,
)


def _bits(bits: tuple[bool, ...]) -> str:
    return "".join("1" if b else "0" for b in bits)


def _unbits(text: str) -> tuple[bool, ...]:
    return tuple(c == "1" for c in text)


def message_to_dict(msg: Message) -> dict[str, Any]:
    """Field view of a message, keyed by the names docs/protocol.md uses."""
    if isinstance(msg, Hello):
        return {
            "type": "hello",
            "version": msg.version,
            "role": msg.role.name.lower(),
            "capabilities": int(msg.capabilities),
        }
    if isinstance(msg, BufferMap):
        return {"type": "buffer_map", "base_seq": msg.base_seq, "bits": _bits(msg.bits)}
    if isinstance(msg, Have):
        return {"type": "have", "seq": msg.seq, "pieces": _bits(msg.pieces)}
    if isinstance(msg, Request):
        return {
            "type": "request",
            "seq": msg.seq,
            "want_header": msg.want_header,
            "first_index": msg.first_index,
            "count": msg.count,
        }
    if isinstance(msg, ChunkHeader):
        return {
            "type": "chunk_header",
            "seq": msg.seq,
            "epoch": msg.epoch,
            "start_us": msg.start_us,
            "duration_us": msg.duration_us,
            "release_us": msg.release_us,
            "total_size": msg.total_size,
            "piece_size": msg.piece_size,
            "piece_count": msg.piece_count,
            "piece_hashes": [h.hex() for h in msg.piece_hashes],
            "signature": msg.signature.hex(),
        }
    if isinstance(msg, Piece):
        return {
            "type": "piece",
            "seq": msg.seq,
            "index": msg.index,
            "count": msg.count,
            "payload": msg.payload.hex(),
        }
    if isinstance(msg, Cancel | Absent):
        name = "cancel" if isinstance(msg, Cancel) else "absent"
        return {"type": name, "seq": msg.seq, "first_index": msg.first_index, "count": msg.count}
    if isinstance(msg, Bye):
        return {"type": "bye", "reason": int(msg.reason), "text": msg.text}
    if isinstance(msg, Peers):
        return {"type": "peers", "peer_ids": list(msg.peer_ids)}
    if isinstance(msg, Signal):
        return {"type": "signal", "to": msg.to, "from": msg.from_peer, "payload": msg.payload}
    return {"type": "unknown", "type_byte": msg.type_byte}


def message_from_dict(d: dict[str, Any]) -> Message:
    """Inverse of message_to_dict (KeyError/ValueError on a malformed dict)."""
    kind = d["type"]
    if kind == "hello":
        return Hello(d["version"], Role[d["role"].upper()], Capability(d["capabilities"]))
    if kind == "buffer_map":
        return BufferMap(d["base_seq"], _unbits(d["bits"]))
    if kind == "have":
        return Have(d["seq"], _unbits(d["pieces"]))
    if kind == "request":
        return Request(d["seq"], d["first_index"], d["count"], d["want_header"])
    if kind == "chunk_header":
        return ChunkHeader(
            seq=d["seq"],
            epoch=d["epoch"],
            start_us=d["start_us"],
            duration_us=d["duration_us"],
            release_us=d["release_us"],
            total_size=d["total_size"],
            piece_size=d["piece_size"],
            piece_hashes=tuple(bytes.fromhex(h) for h in d["piece_hashes"]),
            signature=bytes.fromhex(d["signature"]),
        )
    if kind == "piece":
        return Piece(d["seq"], d["index"], d["count"], bytes.fromhex(d["payload"]))
    if kind == "cancel":
        return Cancel(d["seq"], d["first_index"], d["count"])
    if kind == "absent":
        return Absent(d["seq"], d["first_index"], d["count"])
    if kind == "bye":
        reason = d["reason"]
        known = reason in ByeReason._value2member_map_
        return Bye(ByeReason(reason) if known else reason, d["text"])
    if kind == "peers":
        return Peers(tuple(d["peer_ids"]))
    if kind == "signal":
        return Signal(d["to"], d["from"], d["payload"])
    if kind == "unknown":
        return Unknown(d["type_byte"])
    raise ValueError(f"unknown message type {kind!r}")
