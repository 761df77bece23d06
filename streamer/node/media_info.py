"""The channel's media description as published through the signaling server, both ways.

Why a module: the broadcaster builds it from the media pipeline's `MediaInfo` and its key; relays,
viewers (and the browser player) read it back from a server they need not trust to be well-formed,
so parsing validates every field and fails with `MediaInfoError`, never a crash.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

from streamer.media import MediaInfo

MAX_INIT_SEGMENT_BYTES = 64 * 1024


class MediaInfoError(ValueError):
    """The published media description is malformed."""


@dataclass(frozen=True)
class ChannelMedia:
    mime_type: str
    codecs: str
    chunk_seconds: float
    init_segment: bytes
    public_key_raw: bytes
    bitrate_bps: int
    first_seq: int | None
    """The first seq of this broadcast session: a jump far ahead means a restarted broadcast."""
    epoch: int | None = None
    """The broadcast session: only chunk headers signed for it are accepted (None: any)."""


def media_description(
    info: MediaInfo, public_key_raw: bytes, bitrate_bps: int, first_seq: int, epoch: int
) -> dict[str, Any]:
    """The `media` object of the signaling `publish` message (docs/signaling.md)."""
    return {
        "mime_type": info.mime_type,
        "codecs": info.codecs,
        "chunk_seconds": info.chunk_seconds,
        "init_segment": base64.b64encode(info.init_segment).decode("ascii"),
        "public_key": base64.b64encode(public_key_raw).decode("ascii"),
        "key_type": "ed25519",
        "bitrate_bps": int(bitrate_bps),
        "first_seq": int(first_seq),
        "epoch": int(epoch),
        "width": info.width,
        "height": info.height,
    }


def _b64(media: dict[str, Any], key: str, max_bytes: int) -> bytes:
    value = media.get(key)
    if not isinstance(value, str) or len(value) > 4 * max_bytes // 3 + 4:
        raise MediaInfoError(f"media.{key} must be a base64 string of at most {max_bytes} bytes")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise MediaInfoError(f"media.{key} is not valid base64") from None


def parse_media(media: Any) -> ChannelMedia:
    """Validate a media description from the server."""
    if not isinstance(media, dict):
        raise MediaInfoError("media must be an object")
    mime_type = media.get("mime_type")
    if not isinstance(mime_type, str) or not 0 < len(mime_type) <= 256:
        raise MediaInfoError("media.mime_type must be a short string")
    codecs = media.get("codecs", "")
    if not isinstance(codecs, str) or len(codecs) > 256:
        raise MediaInfoError("media.codecs must be a short string")
    chunk_seconds = media.get("chunk_seconds")
    if (
        isinstance(chunk_seconds, bool)
        or not isinstance(chunk_seconds, int | float)
        or not 0.05 <= chunk_seconds <= 60
    ):
        raise MediaInfoError("media.chunk_seconds must be a number in [0.05, 60]")
    key_type = media.get("key_type", "ed25519")
    if key_type != "ed25519":
        raise MediaInfoError(f"unsupported signature key type {key_type!r}")
    public_key_raw = _b64(media, "public_key", 32)
    if len(public_key_raw) != 32:
        raise MediaInfoError("media.public_key must be a raw 32-byte Ed25519 key")
    init_segment = _b64(media, "init_segment", MAX_INIT_SEGMENT_BYTES)
    if not init_segment:
        raise MediaInfoError("media.init_segment is empty")
    bitrate_bps = media.get("bitrate_bps", 0)
    if isinstance(bitrate_bps, bool) or not isinstance(bitrate_bps, int) or bitrate_bps < 0:
        raise MediaInfoError("media.bitrate_bps must be a non-negative integer")
    first_seq = media.get("first_seq")
    if first_seq is not None and (
        isinstance(first_seq, bool) or not isinstance(first_seq, int) or first_seq < 0
    ):
        raise MediaInfoError("media.first_seq must be a non-negative integer")
    epoch = media.get("epoch")
    if epoch is not None and (
        isinstance(epoch, bool) or not isinstance(epoch, int) or not 0 <= epoch <= 0xFFFFFFFF
    ):
        raise MediaInfoError("media.epoch must be an integer in [0, 2**32)")
    return ChannelMedia(
        mime_type=mime_type,
        codecs=codecs,
        chunk_seconds=float(chunk_seconds),
        init_segment=init_segment,
        public_key_raw=public_key_raw,
        bitrate_bps=bitrate_bps,
        first_seq=first_seq,
        epoch=epoch,
    )
