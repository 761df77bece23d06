"""RFC 6381 codec strings (`avc1.64001f`, `mp4a.40.2`) read from an init segment.

Why from the init segment: `MediaSource.isTypeSupported` and `addSourceBuffer` must be given the
profile and level the bytes really carry, so we read them from the avcC and esds boxes the muxer
wrote instead of trusting encoder settings. Pure code.
"""

from __future__ import annotations

from streamer.media.boxes import BoxError, InitInfo, TrackInfo, iter_boxes

# Bytes of fixed fields at the start of a VisualSampleEntry / AudioSampleEntry payload (14496-12).
_VISUAL_ENTRY_FIXED = 78
_AUDIO_ENTRY_FIXED = {0: 28, 1: 44, 2: 64}


def avc_codec_string(avcc: bytes) -> str:
    """`avc1.PPCCLL` from an AVCDecoderConfigurationRecord (profile, constraint flags, level)."""
    if len(avcc) < 4 or avcc[0] != 1:
        raise BoxError("avcC record is malformed")
    return f"avc1.{avcc[1]:02x}{avcc[2]:02x}{avcc[3]:02x}"


def aac_codec_string(audio_specific_config: bytes) -> str:
    """`mp4a.40.N` where N is the MPEG-4 audio object type (2 = AAC-LC, 5 = HE-AAC, ...)."""
    if len(audio_specific_config) < 2:
        raise BoxError("AAC AudioSpecificConfig is too short")
    object_type = audio_specific_config[0] >> 3
    if object_type == 31:  # escape: 6 more bits follow
        object_type = 32 + (
            ((audio_specific_config[0] & 0x07) << 3) | (audio_specific_config[1] >> 5)
        )
    if object_type == 0:
        raise BoxError("AAC AudioSpecificConfig has object type 0")
    return f"mp4a.40.{object_type}"


def _read_descriptor(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, payload start, payload end) of an MPEG-4 descriptor with its variable-length size."""
    if pos >= len(data):
        raise BoxError("esds descriptor truncated")
    tag = data[pos]
    pos += 1
    size = 0
    for _ in range(4):
        if pos >= len(data):
            raise BoxError("esds descriptor truncated")
        byte = data[pos]
        pos += 1
        size = (size << 7) | (byte & 0x7F)
        if not byte & 0x80:
            break
    if pos + size > len(data):
        raise BoxError("esds descriptor runs past its box")
    return tag, pos, pos + size


def audio_specific_config_from_esds(esds_payload: bytes) -> bytes:
    """The DecoderSpecificInfo bytes inside an esds box payload (after version/flags)."""
    tag, start, _end = _read_descriptor(esds_payload, 4)
    if tag != 0x03:
        raise BoxError("esds has no ES_Descriptor")
    flags = esds_payload[start + 2]
    pos = start + 3
    if flags & 0x80:
        pos += 2  # dependsOn_ES_ID
    if flags & 0x40:
        pos += 1 + esds_payload[pos]  # URL
    if flags & 0x20:
        pos += 2  # OCR_ES_Id
    tag, start, end = _read_descriptor(esds_payload, pos)
    if tag != 0x04:
        raise BoxError("esds has no DecoderConfigDescriptor")
    pos = start + 13
    while pos < end:
        tag, dsi_start, dsi_end = _read_descriptor(esds_payload, pos)
        if tag == 0x05:
            return esds_payload[dsi_start:dsi_end]
        pos = dsi_end
    raise BoxError("esds has no DecoderSpecificInfo")


def _child_box(payload: bytes, fixed: int, box_type: bytes) -> bytes | None:
    for box in iter_boxes(payload, fixed):
        if box.type == box_type:
            return payload[box.payload_start : box.end]
    return None


def track_codec_string(track: TrackInfo) -> str:
    """The RFC 6381 string for one track of an init segment we produced (H.264 or AAC)."""
    payload = track.sample_entry_payload
    if track.sample_entry in (b"avc1", b"avc3"):
        avcc = _child_box(payload, _VISUAL_ENTRY_FIXED, b"avcC")
        if avcc is None:
            raise BoxError("avc1 sample entry has no avcC box")
        return avc_codec_string(avcc)
    if track.sample_entry == b"mp4a":
        version = int.from_bytes(payload[8:10], "big") if len(payload) >= 10 else 0
        fixed = _AUDIO_ENTRY_FIXED.get(version)
        if fixed is None:
            raise BoxError(f"mp4a sample entry version {version} is unknown")
        esds = _child_box(payload, fixed, b"esds")
        if esds is None:
            raise BoxError("mp4a sample entry has no esds box")
        return aac_codec_string(audio_specific_config_from_esds(esds))
    raise BoxError(f"no codec string for sample entry {track.sample_entry!r}")


def codecs_for_init(init: InitInfo) -> str:
    """`avc1.64001f,mp4a.40.2`: video first, then audio, as browsers list them."""
    parts = []
    for handler in ("vide", "soun"):
        track = init.track_by_handler(handler)
        if track is not None:
            parts.append(track_codec_string(track))
    if not parts:
        raise BoxError("init segment has neither a video nor an audio track")
    return ",".join(parts)


def mime_type_for(codecs: str) -> str:
    """The full type string for `MediaSource.isTypeSupported`."""
    kind = "video" if "avc1" in codecs or "avc3" in codecs else "audio"
    return f'{kind}/mp4; codecs="{codecs}"'
