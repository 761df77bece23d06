"""The /ws message schema: parse and validate client messages, build server messages (pure).

Rules this module never breaks: it never trusts a field's type or size, it never raises anything
but ProtocolError on bad input (no KeyError, no RecursionError, no UnicodeError escapes), and it
does no I/O. The wire contract is written down in docs/signaling.md.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeGuard

from signaling_wire import (
    CHANNEL_NAME_RE,
    MAX_PEER_SECRET_CHARS,
    MIN_PEER_SECRET_CHARS,
    PEER_ID_RE,
    PROTOCOL_VERSION,
    ROLES,
    Role,
)

MAX_SECRET_CHARS = 256
MAX_TOKEN_CHARS = 256
MAX_MIME_TYPE_CHARS = 256
MAX_STATS_KEYS = 32
MAX_STATS_KEY_CHARS = 64
MAX_RATE_BPS = 10**12
MAX_CHUNK_SECONDS = 60.0
MAX_SEQ = 2**53


class ProtocolError(Exception):
    """A refused message: `code` is the wire error code; `fatal`: the socket is closed after."""

    def __init__(self, code: str, message: str, fatal: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.fatal = fatal


@dataclass(frozen=True)
class Limits:
    """Size caps the parser enforces (ServerConfig.limits)."""

    max_message_bytes: int = 64 * 1024
    max_publish_bytes: int = 160 * 1024
    max_init_segment_bytes: int = 64 * 1024
    max_public_key_bytes: int = 1024
    max_signal_data_bytes: int = 32 * 1024
    max_stats_bytes: int = 2048
    max_get_peers: int = 32
    max_neighbours_reported: int = 64
    max_exclude: int = 256


@dataclass(frozen=True)
class Join:
    channel: str
    role: Role
    secret: str | None
    token: str | None
    #: The client's own secret its peer id is derived from (signaling_wire.peer_id_for).
    peer_secret: str | None = None
    #: How many candidates the welcome should carry at most (None: the server's number). A
    #: client that rejoins with its links open asks for 0: a wave of rejoins costs no samples.
    want_peers: int | None = None


@dataclass(frozen=True)
class Publish:
    media: dict[str, Any]


@dataclass(frozen=True)
class Signal:
    to: str
    data: dict[str, Any]


@dataclass(frozen=True)
class GetPeers:
    count: int
    exclude: frozenset[str]


@dataclass(frozen=True)
class Status:
    neighbours: tuple[str, ...]
    upload_bps: int
    spare_upload_bps: int | None
    latest_seq: int | None
    stats: dict[str, float]


@dataclass(frozen=True)
class End:
    pass


@dataclass(frozen=True)
class Ping:
    pass


ClientMessage = Join | Publish | Signal | GetPeers | Status | End | Ping


def parse_client_message(text: str, size_bytes: int, limits: Limits) -> ClientMessage:
    """Decode one text frame into a typed message, or raise ProtocolError with a wire code."""
    if size_bytes > max(limits.max_message_bytes, limits.max_publish_bytes):
        raise ProtocolError("too_large", f"message of {size_bytes} bytes is too large")
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):
        raise ProtocolError("bad_json", "message is not valid JSON") from None
    if not isinstance(obj, dict):
        raise ProtocolError("invalid_message", "message must be a JSON object")
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise ProtocolError("invalid_message", "message needs a string 'type'")
    if kind != "publish" and size_bytes > limits.max_message_bytes:
        raise ProtocolError(
            "too_large", f"{kind[:32]!r} message of {size_bytes} bytes is too large"
        )
    parser = _PARSERS.get(kind)
    if parser is None:
        raise ProtocolError("unknown_type", f"unknown message type {kind[:32]!r}")
    return parser(obj, size_bytes, limits)


def _parse_join(obj: dict[str, Any], size_bytes: int, limits: Limits) -> Join:
    version = obj.get("v", PROTOCOL_VERSION)
    if version != PROTOCOL_VERSION or isinstance(version, bool):
        raise ProtocolError(
            "unsupported_version", f"protocol version {PROTOCOL_VERSION} only", fatal=True
        )
    channel = obj.get("channel")
    if not isinstance(channel, str) or not CHANNEL_NAME_RE.match(channel):
        raise ProtocolError(
            "bad_channel_name", "channel names are 1-64 of A-Z a-z 0-9 _ -", fatal=True
        )
    role = obj.get("role")
    if role not in ROLES:
        raise ProtocolError("invalid_message", "role must be viewer, relay or broadcaster")
    secret = _optional_str(obj, "secret", MAX_SECRET_CHARS)
    token = _optional_str(obj, "token", MAX_TOKEN_CHARS)
    if role == "broadcaster" and not secret:
        raise ProtocolError("invalid_message", "a broadcaster join needs a non-empty 'secret'")
    peer_secret = _optional_str(obj, "peer_secret", MAX_PEER_SECRET_CHARS)
    if peer_secret is not None and len(peer_secret) < MIN_PEER_SECRET_CHARS:
        raise ProtocolError(
            "invalid_message", f"'peer_secret' needs at least {MIN_PEER_SECRET_CHARS} chars"
        )
    want_peers = obj.get("want_peers")
    if want_peers is not None and (not _is_int(want_peers) or want_peers < 0):
        raise ProtocolError("invalid_message", "'want_peers' must be a non-negative integer")
    return Join(
        channel=channel,
        role=role,
        secret=secret,
        token=token,
        peer_secret=peer_secret,
        want_peers=want_peers,
    )


def _parse_publish(obj: dict[str, Any], size_bytes: int, limits: Limits) -> Publish:
    if size_bytes > limits.max_publish_bytes:
        raise ProtocolError("too_large", f"publish of {size_bytes} bytes is too large")
    media = obj.get("media")
    if not isinstance(media, dict):
        raise ProtocolError("invalid_message", "publish needs a 'media' object")
    mime_type = media.get("mime_type")
    if not isinstance(mime_type, str) or not 0 < len(mime_type) <= MAX_MIME_TYPE_CHARS:
        raise ProtocolError("invalid_message", "media.mime_type must be a short string")
    chunk_seconds = media.get("chunk_seconds")
    if not _is_number(chunk_seconds) or not 0 < chunk_seconds <= MAX_CHUNK_SECONDS:
        raise ProtocolError("invalid_message", "media.chunk_seconds must be in (0, 60]")
    _check_base64(media, "init_segment", limits.max_init_segment_bytes)
    _check_base64(media, "public_key", limits.max_public_key_bytes)
    bitrate_bps = media.get("bitrate_bps")
    if not _is_int(bitrate_bps) or not 0 <= bitrate_bps <= MAX_RATE_BPS:
        raise ProtocolError("invalid_message", "media.bitrate_bps must be a non-negative integer")
    return Publish(media=media)


def _parse_signal(obj: dict[str, Any], size_bytes: int, limits: Limits) -> Signal:
    to = obj.get("to")
    if not isinstance(to, str) or not PEER_ID_RE.match(to):
        raise ProtocolError("invalid_message", "signal needs a peer id in 'to'")
    data = obj.get("data")
    if not isinstance(data, dict):
        raise ProtocolError("invalid_message", "signal needs a 'data' object")
    # The whole frame bounds the data; only serialize when the frame alone cannot prove the cap.
    if size_bytes > limits.max_signal_data_bytes:
        data_bytes = len(json.dumps(data, separators=(",", ":")).encode("utf-8"))
        if data_bytes > limits.max_signal_data_bytes:
            raise ProtocolError("too_large", f"signal data of {data_bytes} bytes is too large")
    return Signal(to=to, data=data)


def _parse_get_peers(obj: dict[str, Any], size_bytes: int, limits: Limits) -> GetPeers:
    count = obj.get("count", limits.max_get_peers // 4)
    if not _is_int(count) or count < 1:
        raise ProtocolError("invalid_message", "get_peers.count must be a positive integer")
    exclude = obj.get("exclude", [])
    if not isinstance(exclude, list) or len(exclude) > limits.max_exclude:
        raise ProtocolError("invalid_message", f"exclude must be a list of <= {limits.max_exclude}")
    if not all(isinstance(peer_id, str) for peer_id in exclude):
        raise ProtocolError("invalid_message", "exclude must hold peer id strings")
    return GetPeers(count=min(count, limits.max_get_peers), exclude=frozenset(exclude))


def _parse_status(obj: dict[str, Any], size_bytes: int, limits: Limits) -> Status:
    neighbours = obj.get("neighbours", [])
    if not isinstance(neighbours, list) or len(neighbours) > limits.max_neighbours_reported:
        raise ProtocolError(
            "invalid_message",
            f"status.neighbours must be a list of <= {limits.max_neighbours_reported} peer ids",
        )
    if not all(isinstance(n, str) and PEER_ID_RE.match(n) for n in neighbours):
        raise ProtocolError("invalid_message", "status.neighbours must hold peer ids")
    upload_bps = obj.get("upload_bps", 0)
    if not _is_int(upload_bps) or not 0 <= upload_bps <= MAX_RATE_BPS:
        raise ProtocolError("invalid_message", "status.upload_bps must be a non-negative integer")
    spare = obj.get("spare_upload_bps")
    if spare is not None and (not _is_int(spare) or not 0 <= spare <= MAX_RATE_BPS):
        raise ProtocolError("invalid_message", "status.spare_upload_bps must be an integer or null")
    latest_seq = obj.get("latest_seq")
    if latest_seq is not None and (not _is_int(latest_seq) or not 0 <= latest_seq <= MAX_SEQ):
        raise ProtocolError("invalid_message", "status.latest_seq must be an integer >= 0 or null")
    stats = _parse_stats(obj.get("stats", {}), limits)
    return Status(
        neighbours=tuple(dict.fromkeys(neighbours)),
        upload_bps=upload_bps,
        spare_upload_bps=spare,
        latest_seq=latest_seq,
        stats=stats,
    )


def _parse_stats(stats: Any, limits: Limits) -> dict[str, float]:
    if not isinstance(stats, dict) or len(stats) > MAX_STATS_KEYS:
        raise ProtocolError(
            "invalid_message", f"status.stats must be an object of <= {MAX_STATS_KEYS}"
        )
    clean: dict[str, float] = {}
    for key, value in stats.items():
        if len(key) > MAX_STATS_KEY_CHARS or not _is_number(value):
            raise ProtocolError("invalid_message", "status.stats must map short names to numbers")
        clean[key] = value
    if len(json.dumps(clean)) > limits.max_stats_bytes:
        raise ProtocolError("too_large", "status.stats is too large")
    return clean


def _parse_end(obj: dict[str, Any], size_bytes: int, limits: Limits) -> End:
    return End()


def _parse_ping(obj: dict[str, Any], size_bytes: int, limits: Limits) -> Ping:
    return Ping()


_PARSERS: dict[str, Callable[[dict[str, Any], int, Limits], ClientMessage]] = {
    "join": _parse_join,
    "publish": _parse_publish,
    "signal": _parse_signal,
    "get_peers": _parse_get_peers,
    "status": _parse_status,
    "end": _parse_end,
    "ping": _parse_ping,
}


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> TypeGuard[int | float]:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, float) and math.isfinite(value)


def _optional_str(obj: dict[str, Any], key: str, max_chars: int) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > max_chars:
        raise ProtocolError("invalid_message", f"{key!r} must be a string of <= {max_chars} chars")
    return value


def _check_base64(media: dict[str, Any], key: str, max_bytes: int) -> None:
    value = media.get(key)
    if not isinstance(value, str) or not value:
        raise ProtocolError("invalid_message", f"media.{key} must be a base64 string")
    # Reject by length before decoding: 4 base64 chars carry 3 bytes.
    if len(value) > 4 * ((max_bytes + 2) // 3):
        raise ProtocolError("too_large", f"media.{key} is larger than {max_bytes} bytes")
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError("invalid_message", f"media.{key} is not valid base64") from None


# --- server -> client messages -------------------------------------------------------------


def encode(message: dict[str, Any]) -> str:
    """Compact JSON; every server message goes through here."""
    # ASCII-only: a lone surrogate a client smuggled in via "\\ud800" must not break the encoder.
    return json.dumps(message, separators=(",", ":"))


def error_message(code: str, message: str, fatal: bool = False) -> dict[str, Any]:
    return {"type": "error", "code": code, "message": message, "fatal": fatal}
