"""Regenerate the golden vectors: `.venv/bin/python tests/vectors/generate.py`.

Only run this when docs/protocol.md changes on purpose (and bump the version if the wire changed):
the vectors pin the format for the Python and JavaScript implementations alike. Ed25519 signing is
deterministic, so the output is byte-identical for the fixed test key.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from streamer.protocol import (
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
    encode_message,
    make_chunk_header,
    split_pieces,
)
from streamer.protocol.jsonview import message_to_dict

HERE = Path(__file__).parent
TEST_KEY_SEED = bytes(range(32))
"""The fixed test key: private seed 00 01 02 ... 1f. Never use it for anything real."""


def chunk_data() -> bytes:
    """A 40,000-byte test chunk: three pieces of 16,384 bytes, the last one 7,232 bytes."""
    return b"".join(hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(1250))


def write(name: str, payload: Any) -> None:
    (HERE / name).write_text(json.dumps(payload, indent=1) + "\n")


def main() -> None:
    key = Ed25519PrivateKey.from_private_bytes(TEST_KEY_SEED)
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    data = chunk_data()
    header = make_chunk_header(
        seq=42,
        data=data,
        start_us=42_000_000,
        duration_us=1_000_000,
        release_us=1_700_000_043_000_000,
        piece_size=16384,
        signing_key=key,
        epoch=7,
    )
    pieces = split_pieces(data, 16384)
    valid = [
        Hello(1, Role.VIEWER, Capability.UPLOAD | Capability.PARTIAL),
        Hello(1, Role.SOURCE, Capability.UPLOAD),
        BufferMap(40, (True, True, False, True, False, False, False, False, True, True)),
        BufferMap(7, ()),
        Have(42, (True, False, True)),
        Have(43, tuple([True] * 8)),
        Request(42, 0, 3, True),
        Request(42, 2, 65535, False),
        Piece(42, 2, 3, b"\x00\x01\x02\xfe\xff"),
        Cancel(42, 1, 2),
        Absent(41, 0, 65535),
        Bye(ByeReason.FORGED, "bad piece 42/1"),
        Bye(ByeReason.NORMAL, "héllo"),
        Peers(()),
        Peers(("Ab3_-xYz0123456Q", "k9")),
        Peers(tuple(f"p{i}" for i in range(16))),
        Signal("Ab3_-xYz0123456Q", "k9", '{"kind":"offer","sdp":"v=0\\r\\n"}'),
        Signal("a", "b", ""),
    ]
    write(
        "messages.json",
        {
            "description": "Valid messages: decode(hex) gives fields; encode(fields) gives hex.",
            "vectors": [
                {"hex": encode_message(m).hex(), "fields": message_to_dict(m)} for m in valid
            ]
            + [
                {
                    "hex": "ee0102",
                    "fields": {"type": "unknown", "type_byte": 238},
                    "note": "unknown type: decode to 'unknown' and ignore; never encoded",
                }
            ],
        },
    )
    write(
        "chunk_header.json",
        {
            "description": "A signed chunk header and its chunk, signed with the fixed test key.",
            "private_key_seed": TEST_KEY_SEED.hex(),
            "public_key": public.hex(),
            "chunk_data_sha256": hashlib.sha256(data).hexdigest(),
            "chunk_data_recipe": "concat(sha256(uint32_be(i)) for i in 0..1249): 40000 bytes",
            "header_hex": header.encode().hex(),
            "header": message_to_dict(header),
            "pieces": [
                {
                    "index": i,
                    "length": len(p),
                    "sha256": hashlib.sha256(p).hexdigest(),
                    "piece_message_prefix_hex": encode_message(Piece(42, i, 3, p))[:9].hex(),
                }
                for i, p in enumerate(pieces)
            ],
            "forged": [
                {
                    "why": "one bit of start_us flipped: signature must not verify",
                    "header_hex": _flip(header.encode(), 9).hex(),
                },
                {
                    "why": "signature's last byte flipped",
                    "header_hex": _flip(header.encode(), len(header.encode()) - 1).hex(),
                },
                {
                    "why": "piece 1 with one byte changed: sha256 must not match piece_hashes[1]",
                    "piece_index": 1,
                    "payload_sha256_of_forged": hashlib.sha256(_flip(pieces[1], 0)).hexdigest(),
                },
            ],
        },
    )
    header_bytes = header.encode()
    malformed: list[tuple[str, str] | tuple[str, str, int]] = [
        ("", "empty message"),
        ("010102000000", "hello truncated (6 bytes, needs 7)"),
        ("0101020000000300", "hello with trailing byte"),
        ("010107" + "00000003", "hello with unknown role 7"),
        ("02000000280003", "buffer map: bit count 3 but no bitfield byte"),
        ("02000000280003ff", "buffer map: nonzero padding bits"),
        ("02000000281001" + "00" * 513, "buffer map: 4097 bits > 4096 (length matches)"),
        ("03000000050000", "have with zero pieces"),
        ("03000000050401" + "00" * 129, "have with 1025 pieces > 1024 (length matches)"),
        ("0300000005000aff", "have: 10 pieces need 2 bitfield bytes"),
        ("04000000020100000003ff", "request with trailing byte"),
        ("040000000201000000", "request truncated"),
        ("04000000020104000001", "request first index 1024 >= 1024"),
        ("04000000020000000000", "request with count 0"),
        ("04000000028000000001", "request with unknown flag 0x80"),
        ("06000000020003000301", "piece index 3 >= count 3"),
        ("060000000200000000" + "01", "piece count 0"),
        ("06000000020000", "piece truncated (no count)"),
        ("060000000200000003", "piece with count 3 but no payload"),
        ("060000000200000001", "piece with empty payload"),
        ("060000000200000001", "oversize: 65536-byte piece message", 65527),
        ("07000000020000", "cancel truncated"),
        ("080000000200000000", "absent with count 0"),
        ("0900", "bye truncated"),
        ("090005" + "6869", "bye text length 5 but 2 bytes"),
        ("090002" + "c328", "bye text not UTF-8"),
        ("0a", "peers truncated (no count)"),
        ("0a01", "peers: count 1 but no id"),
        ("0a0100", "peers: empty id"),
        ("0a01026162" + "00", "peers with trailing byte"),
        ("0a0103616263" + "ff", "peers with trailing byte after the last id"),
        ("0a010261", "peers: id length 2 but 1 byte"),
        ("0a01026121", "peers: id with '!' outside the peer-id pattern"),
        ("0a0102c3a9", "peers: non-ASCII id"),
        ("0a0121" + "61" * 33, "peers: id of 33 characters (max 32)"),
        ("0a11" + "0161" * 17, "peers: 17 ids (max 16)"),
        ("0b", "signal truncated"),
        ("0b0161", "signal truncated after to"),
        ("0b01610162", "signal without payload length"),
        ("0b016101620005" + "7b7d", "signal payload length 5 but 2 bytes"),
        ("0b016101620002" + "7b7d00", "signal with trailing byte"),
        ("0b016101620002" + "c328", "signal payload not UTF-8"),
        ("0b00016200017b", "signal: empty to"),
        ("0b01610120000162", "signal: from with a space"),
        ("0b0161016240017b", "signal: payload of 16385 bytes (max 16384)", 16384),
        (header_bytes[:-1].hex(), "chunk header missing last signature byte"),
        (header_bytes.hex() + "00", "chunk header with trailing byte"),
        (_set_count(header_bytes, 0).hex(), "chunk header piece count 0"),
        (_set_count(header_bytes, 4).hex(), "chunk header: 4 pieces do not match size/piece size"),
    ]
    write(
        "malformed.json",
        {
            "description": "Each message must be rejected as a protocol error (sender dropped). "
            "The message is hex followed by pad_zero_bytes zero bytes (when present).",
            "vectors": [_malformed_entry(*m) for m in malformed],
        },
    )


def _malformed_entry(hex_text: str, why: str, pad_zero_bytes: int = 0) -> dict[str, Any]:
    entry: dict[str, Any] = {"hex": hex_text, "why": why}
    if pad_zero_bytes:
        entry["pad_zero_bytes"] = pad_zero_bytes
    return entry


def _flip(data: bytes, index: int) -> bytes:
    out = bytearray(data)
    out[index] ^= 0x01
    return bytes(out)


def _set_count(header: bytes, count: int) -> bytes:
    out = bytearray(header)
    out[31:33] = count.to_bytes(2, "big")
    return bytes(out)


if __name__ == "__main__":
    main()
