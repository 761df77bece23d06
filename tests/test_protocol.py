"""Wire protocol: golden vectors, round trips of every message, malformed input, signed headers."""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from streamer.protocol import (
    MAX_MESSAGE_BYTES,
    MAX_PIECE_BYTES,
    Absent,
    BufferMap,
    Bye,
    ByeReason,
    Cancel,
    Capability,
    ChunkHeader,
    Have,
    Hello,
    Piece,
    ProtocolError,
    Request,
    Role,
    Unknown,
    decode_message,
    encode_message,
    make_chunk_header,
    split_pieces,
    travels_unordered,
)
from streamer.protocol.jsonview import message_from_dict, message_to_dict

VECTORS = Path(__file__).parent / "vectors"


def load(name: str) -> Any:
    return json.loads((VECTORS / name).read_text())


def chunk_data() -> bytes:
    return b"".join(hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(1250))


@pytest.mark.parametrize("vector", load("messages.json")["vectors"], ids=lambda v: v["hex"][:24])
def test_golden_message_decodes_to_fields_and_encodes_back(vector: dict[str, Any]) -> None:
    data = bytes.fromhex(vector["hex"])
    msg = decode_message(data)
    assert message_to_dict(msg) == vector["fields"]
    if not isinstance(msg, Unknown):
        assert encode_message(message_from_dict(vector["fields"])) == data


def test_only_pieces_and_requests_travel_unordered() -> None:
    """The golden messages the unordered channel carries (the JS port checks the same)."""
    vectors = load("messages.json")["vectors"]
    kinds = {v["fields"]["type"] for v in vectors}
    unordered = {v["fields"]["type"] for v in vectors if travels_unordered(bytes.fromhex(v["hex"]))}
    assert {"request", "piece", "have", "cancel", "hello"} <= kinds
    assert unordered == {"request", "piece"}
    # A header stays in order ahead of the haves and pieces that need it.
    assert not travels_unordered(bytes.fromhex(load("chunk_header.json")["header_hex"]))


@pytest.mark.parametrize("vector", load("malformed.json")["vectors"], ids=lambda v: v["why"])
def test_golden_malformed_message_is_rejected(vector: dict[str, Any]) -> None:
    data = bytes.fromhex(vector["hex"]) + bytes(vector.get("pad_zero_bytes", 0))
    with pytest.raises(ProtocolError):
        decode_message(data)


def test_golden_signed_header_verifies_with_the_test_key() -> None:
    vec = load("chunk_header.json")
    key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(vec["private_key_seed"]))
    public_raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    assert public_raw.hex() == vec["public_key"]
    data = chunk_data()
    assert hashlib.sha256(data).hexdigest() == vec["chunk_data_sha256"]
    header = decode_message(bytes.fromhex(vec["header_hex"]))
    assert isinstance(header, ChunkHeader)
    assert message_to_dict(header) == vec["header"]
    assert header.verify(key.public_key())
    # Ed25519 is deterministic: signing the same chunk again gives the same bytes.
    again = make_chunk_header(
        seq=42,
        data=data,
        start_us=42_000_000,
        duration_us=1_000_000,
        release_us=1_700_000_043_000_000,
        piece_size=16384,
        signing_key=key,
        epoch=7,
    )
    assert again.encode().hex() == vec["header_hex"]
    for piece_vec, payload in zip(vec["pieces"], split_pieces(data, 16384), strict=True):
        assert len(payload) == piece_vec["length"]
        assert header.piece_ok(piece_vec["index"], payload)
        msg = encode_message(Piece(42, piece_vec["index"], 3, payload))
        assert msg[:9].hex() == piece_vec["piece_message_prefix_hex"]


def test_golden_forged_headers_and_piece_fail_verification() -> None:
    vec = load("chunk_header.json")
    public = Ed25519PrivateKey.from_private_bytes(
        bytes.fromhex(vec["private_key_seed"])
    ).public_key()
    forged_headers = [f for f in vec["forged"] if "header_hex" in f]
    assert len(forged_headers) == 2
    for forged in forged_headers:
        header = decode_message(bytes.fromhex(forged["header_hex"]))
        assert isinstance(header, ChunkHeader)
        assert not header.verify(public)
    genuine = decode_message(bytes.fromhex(vec["header_hex"]))
    assert isinstance(genuine, ChunkHeader)
    piece = bytearray(split_pieces(chunk_data(), 16384)[1])
    piece[0] ^= 1
    assert hashlib.sha256(piece).hexdigest() == vec["forged"][2]["payload_sha256_of_forged"]
    assert not genuine.piece_ok(1, bytes(piece))


def test_header_signed_by_another_key_fails() -> None:
    source = Ed25519PrivateKey.from_private_bytes(bytes(32))
    impostor = Ed25519PrivateKey.from_private_bytes(bytes([7]) * 32)
    header = make_chunk_header(
        seq=1,
        data=b"x" * 100,
        start_us=0,
        duration_us=1,
        release_us=0,
        piece_size=30,
        signing_key=impostor,
    )
    assert header.piece_count == 4 and header.piece_length(3) == 10
    assert not header.verify(source.public_key())
    assert header.verify(impostor.public_key())


def test_piece_with_wrong_length_or_index_is_not_ok() -> None:
    key = Ed25519PrivateKey.from_private_bytes(bytes(32))
    data = bytes(range(256)) * 4
    header = make_chunk_header(
        seq=3, data=data, start_us=0, duration_us=1, release_us=0, piece_size=300, signing_key=key
    )
    pieces = split_pieces(data, 300)
    assert all(header.piece_ok(i, p) for i, p in enumerate(pieces))
    assert not header.piece_ok(0, pieces[0] + b"\x00")
    assert not header.piece_ok(4, pieces[3])
    assert not header.piece_ok(-1, pieces[0])


def random_message(rng: random.Random, key: Ed25519PrivateKey) -> Any:
    seq = rng.randrange(2**32)
    kind = rng.randrange(9)
    if kind == 0:
        caps = Capability(rng.randrange(4))
        return Hello(rng.randrange(256), rng.choice(list(Role)), caps)
    if kind == 1:
        return BufferMap(seq, tuple(rng.random() < 0.5 for _ in range(rng.randrange(4097))))
    if kind == 2:
        return Have(seq, tuple(rng.random() < 0.5 for _ in range(rng.randrange(1, 1025))))
    if kind == 3:
        return Request(seq, rng.randrange(1024), rng.randrange(1, 65536), rng.random() < 0.5)
    if kind == 4:
        data = rng.randbytes(rng.randrange(1, 200_000))
        piece_size = rng.choice([1024, 16384, MAX_PIECE_BYTES])
        return make_chunk_header(
            seq=seq,
            data=data,
            start_us=rng.randrange(2**63),
            duration_us=rng.randrange(2**32),
            release_us=rng.randrange(2**63),
            piece_size=piece_size,
            signing_key=key,
        )
    if kind == 5:
        count = rng.randrange(1, 1025)
        payload = rng.randbytes(rng.randrange(1, MAX_PIECE_BYTES + 1))
        return Piece(seq, rng.randrange(count), count, payload)
    if kind == 6:
        return Cancel(seq, rng.randrange(1024), rng.randrange(1, 65536))
    if kind == 7:
        return Absent(seq, rng.randrange(1024), rng.randrange(1, 65536))
    return Bye(
        rng.choice(list(ByeReason)), "".join(chr(rng.randrange(32, 0x3000)) for _ in range(20))
    )


def test_every_message_kind_round_trips_seeded() -> None:
    rng = random.Random(1234)
    key = Ed25519PrivateKey.from_private_bytes(bytes(32))
    kinds = set()
    for _ in range(400):
        msg = random_message(rng, key)
        data = encode_message(msg)
        assert len(data) <= MAX_MESSAGE_BYTES
        back = decode_message(data)
        assert back == msg
        kinds.add(type(msg).__name__)
    assert len(kinds) == 9


def test_truncations_and_garbage_raise_only_protocol_error() -> None:
    """Every prefix of every valid message, and random bytes, decode or raise ProtocolError."""
    rng = random.Random(99)
    key = Ed25519PrivateKey.from_private_bytes(bytes(32))
    for _ in range(60):
        data = encode_message(random_message(rng, key))
        for cut in {0, 1, 2, 5, 7, len(data) // 2, len(data) - 1}:
            if 0 <= cut < len(data):
                with contextlib.suppress(ProtocolError):
                    decode_message(data[:cut])
    rejected = 0
    for _ in range(3000):
        blob = bytes([rng.randrange(1, 10)]) + rng.randbytes(rng.randrange(0, 40))
        try:
            decode_message(blob)
        except ProtocolError:
            rejected += 1
    assert rejected > 1000  # most random bytes are malformed, and none raised anything else


def test_unknown_type_is_reported_not_rejected() -> None:
    assert decode_message(b"\x7f\x00\x01") == Unknown(0x7F)
    assert decode_message(b"\x00") == Unknown(0)


def test_encoder_refuses_what_the_wire_cannot_carry() -> None:
    with pytest.raises(ValueError):
        encode_message(Piece(1, 3, 3, b"x"))
    with pytest.raises(ValueError):
        encode_message(Piece(1, 0, 1, b""))
    with pytest.raises(ValueError):
        encode_message(Piece(1, 0, 1, bytes(MAX_PIECE_BYTES + 1)))
    with pytest.raises(ValueError):
        encode_message(Have(2**32, (True,)))
    with pytest.raises(ValueError):
        encode_message(Request(1, 0, 0, False))
    with pytest.raises(ValueError):
        encode_message(BufferMap(0, (True,) * 4097))
    with pytest.raises(ValueError):
        make_chunk_header(
            seq=1,
            data=bytes(1025),
            start_us=0,
            duration_us=0,
            release_us=0,
            piece_size=1,
            signing_key=Ed25519PrivateKey.from_private_bytes(bytes(32)),
        )


def test_bye_text_is_cut_on_a_character_boundary() -> None:
    msg = decode_message(encode_message(Bye(ByeReason.NORMAL, "é" * 200)))
    assert isinstance(msg, Bye)
    assert msg.text == "é" * 127
    assert decode_message(b"\x09\x63\x00") == Bye(99, "")
