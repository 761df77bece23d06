"""H.264 NAL unit framing: Annex B start codes -> MP4 length prefixes. Pure.

Why: when a copied H.264 stream turns to re-encoding mid-run, the encoder's packets go into the
same MP4 track as the copied ones, whose samples are length-prefixed (avcC). The encoder writes
Annex B with its parameter sets in band (SPS/PPS before each IDR), which decoders take over the
ones in the init segment, so viewers need no new init segment.
"""

from __future__ import annotations


class NalError(ValueError):
    """Not Annex B H.264, or an avcC record too short to read."""


def nal_length_size(avcc: bytes) -> int:
    """Bytes per NAL length prefix, from an AVCDecoderConfigurationRecord (usually 4)."""
    if len(avcc) < 5 or avcc[0] != 1:
        raise NalError("not an avcC record")
    return (avcc[4] & 0x03) + 1


def split_annexb(data: bytes) -> list[bytes]:
    """The NAL units of an Annex B byte stream (3- or 4-byte start codes), without start codes."""
    starts: list[tuple[int, int]] = []  # (start code offset, payload offset)
    index = data.find(b"\x00\x00\x01")
    while index >= 0:
        code_at = index - 1 if index > 0 and data[index - 1] == 0 else index
        starts.append((code_at, index + 3))
        index = data.find(b"\x00\x00\x01", index + 3)
    if not starts or data[: starts[0][0]].strip(b"\x00"):
        raise NalError("no Annex B start code at the beginning")
    units: list[bytes] = []
    for (_, payload_at), (next_code_at, _) in zip(
        starts, [*starts[1:], (len(data), 0)], strict=True
    ):
        # A NAL unit never ends in a zero byte: zeros before a start code are padding.
        unit = data[payload_at:next_code_at].rstrip(b"\x00")
        if unit:
            units.append(unit)
    return units


def annexb_to_length_prefixed(data: bytes, length_size: int = 4) -> bytes:
    """Annex B -> the MP4 sample format with `length_size`-byte big-endian length prefixes."""
    if length_size not in (1, 2, 4):
        raise NalError(f"unsupported NAL length size {length_size}")
    limit = 1 << (8 * length_size)
    out = bytearray()
    for unit in split_annexb(data):
        if len(unit) >= limit:
            raise NalError(
                f"NAL unit of {len(unit)} bytes does not fit a {length_size}-byte length"
            )
        out += len(unit).to_bytes(length_size, "big") + unit
    return bytes(out)
