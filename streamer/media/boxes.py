"""ISO BMFF (MP4) box reading: just enough to split, time and check fragmented MP4.

Why our own parser: chunk timing must come from what the browser will actually read (the `tfdt`
and `trun` boxes of each fragment), not from what we believe we handed to the muxer. Pure code:
bytes in, facts out; malformed input raises `BoxError`, never anything else.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

# Containers whose payload is itself a list of boxes (the ones we descend into).
_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"mvex", b"moof", b"traf", b"edts"}

# trun sample flag bit (ISO/IEC 14496-12 8.8.3.1): set on samples that are not sync samples.
SAMPLE_IS_NON_SYNC = 0x00010000


class BoxError(ValueError):
    """The bytes are not the well-formed MP4 boxes we expected."""


@dataclass(frozen=True)
class Box:
    """One box: its four-character type, where its payload lies in the buffer, and its size."""

    type: bytes
    start: int  # offset of the box header in the buffer
    payload_start: int
    end: int  # offset just past the box

    @property
    def size_bytes(self) -> int:
        return self.end - self.start


def read_box_header(data: bytes | bytearray | memoryview, offset: int) -> Box | None:
    """The box starting at `offset`, or None when `data` does not yet hold all of it."""
    if len(data) - offset < 8:
        return None
    size, box_type = struct.unpack_from(">I4s", data, offset)
    header = 8
    if size == 1:
        if len(data) - offset < 16:
            return None
        (size,) = struct.unpack_from(">Q", data, offset + 8)
        header = 16
    elif size == 0:
        raise BoxError(f"box {box_type!r} extends to end of file: not allowed in a stream")
    if size < header:
        raise BoxError(f"box {box_type!r} has impossible size {size}")
    if len(data) - offset < size:
        return None
    return Box(bytes(box_type), offset, offset + header, offset + size)


def iter_boxes(data: bytes | memoryview, start: int = 0, end: int | None = None) -> Iterator[Box]:
    """The boxes laid end to end in data[start:end]; a truncated last box is an error."""
    end = len(data) if end is None else end
    offset = start
    view = memoryview(data)[:end]
    while offset < end:
        box = read_box_header(view, offset)
        if box is None:
            raise BoxError(f"truncated box at offset {offset}")
        yield box
        offset = box.end


def find_child(data: bytes, parent: Box, box_type: bytes) -> Box | None:
    for child in iter_boxes(data, parent.payload_start, parent.end):
        if child.type == box_type:
            return child
    return None


def _children(data: bytes, parent: Box, box_type: bytes) -> list[Box]:
    return [b for b in iter_boxes(data, parent.payload_start, parent.end) if b.type == box_type]


def _full_box(data: bytes, box: Box) -> tuple[int, int, int]:
    """(version, flags, offset of the fields after them) of a FullBox."""
    if box.end - box.payload_start < 4:
        raise BoxError(f"{box.type!r} too short")
    (word,) = struct.unpack_from(">I", data, box.payload_start)
    return word >> 24, word & 0xFFFFFF, box.payload_start + 4


@dataclass(frozen=True)
class TrackInfo:
    """What the init segment says about one track."""

    track_id: int
    handler: str  # 'vide' or 'soun' (others are kept but ignored)
    timescale: int
    default_sample_duration: int  # from trex; used when a fragment gives none
    sample_entry: bytes  # e.g. b'avc1', b'mp4a'
    sample_entry_payload: bytes  # the sample entry box's payload (holds avcC / esds)


@dataclass(frozen=True)
class InitInfo:
    tracks: dict[int, TrackInfo]

    def track_by_handler(self, handler: str) -> TrackInfo | None:
        for track in self.tracks.values():
            if track.handler == handler:
                return track
        return None


def parse_init(data: bytes) -> InitInfo:
    """Read the tracks out of an init segment (ftyp + moov)."""
    moov = next((b for b in iter_boxes(data) if b.type == b"moov"), None)
    if moov is None:
        raise BoxError("init segment has no moov box")
    trex_durations: dict[int, int] = {}
    mvex = find_child(data, moov, b"mvex")
    if mvex is not None:
        for trex in _children(data, mvex, b"trex"):
            _, _, pos = _full_box(data, trex)
            track_id, _desc, duration = struct.unpack_from(">III", data, pos)
            trex_durations[track_id] = duration
    tracks: dict[int, TrackInfo] = {}
    for trak in _children(data, moov, b"trak"):
        tkhd = _require(data, trak, b"tkhd")
        version, _, pos = _full_box(data, tkhd)
        (track_id,) = struct.unpack_from(">I", data, pos + (16 if version == 1 else 8))
        mdia = _require(data, trak, b"mdia")
        mdhd = _require(data, mdia, b"mdhd")
        version, _, pos = _full_box(data, mdhd)
        (timescale,) = struct.unpack_from(">I", data, pos + (16 if version == 1 else 8))
        hdlr = _require(data, mdia, b"hdlr")
        _, _, pos = _full_box(data, hdlr)
        handler = data[pos + 4 : pos + 8].decode("latin-1")
        stbl = _require(data, _require(data, mdia, b"minf"), b"stbl")
        stsd = _require(data, stbl, b"stsd")
        _, _, pos = _full_box(data, stsd)
        entries = list(iter_boxes(data, pos + 4, stsd.end))
        if not entries:
            raise BoxError(f"track {track_id} has no sample entry")
        entry = entries[0]
        if timescale == 0:
            raise BoxError(f"track {track_id} has timescale 0")
        tracks[track_id] = TrackInfo(
            track_id=track_id,
            handler=handler,
            timescale=timescale,
            default_sample_duration=trex_durations.get(track_id, 0),
            sample_entry=entry.type,
            sample_entry_payload=bytes(data[entry.payload_start : entry.end]),
        )
    if not tracks:
        raise BoxError("init segment has no tracks")
    return InitInfo(tracks)


def _require(data: bytes, parent: Box, box_type: bytes) -> Box:
    child = find_child(data, parent, box_type)
    if child is None:
        raise BoxError(f"{parent.type!r} has no {box_type!r} box")
    return child


@dataclass(frozen=True)
class TrackRun:
    """One track's samples inside one fragment (all its truns together)."""

    track_id: int
    base_decode_time: int  # tfdt, in the track's timescale
    sample_count: int
    duration: int  # sum of sample durations, in the track's timescale
    first_sample_is_sync: bool
    first_composition_offset: int


@dataclass(frozen=True)
class FragmentInfo:
    runs: dict[int, TrackRun] = field(default_factory=dict)


def parse_moof(data: bytes, moof: Box, init: InitInfo) -> FragmentInfo:
    """Timing and sync flags of every track fragment in one moof box."""
    runs: dict[int, TrackRun] = {}
    for traf in _children(data, moof, b"traf"):
        tfhd = _require(data, traf, b"tfhd")
        _, flags, pos = _full_box(data, tfhd)
        (track_id,) = struct.unpack_from(">I", data, pos)
        pos += 4
        track = init.tracks.get(track_id)
        if track is None:
            raise BoxError(f"fragment refers to unknown track {track_id}")
        default_duration = track.default_sample_duration
        default_flags = 0
        if flags & 0x01:
            pos += 8  # base-data-offset
        if flags & 0x02:
            pos += 4  # sample-description-index
        if flags & 0x08:
            (default_duration,) = struct.unpack_from(">I", data, pos)
            pos += 4
        if flags & 0x10:
            pos += 4  # default-sample-size
        if flags & 0x20:
            (default_flags,) = struct.unpack_from(">I", data, pos)
        tfdt = find_child(data, traf, b"tfdt")
        if tfdt is None:
            raise BoxError(f"track fragment {track_id} has no tfdt (need default_base_moof)")
        version, _, pos = _full_box(data, tfdt)
        fmt = ">Q" if version == 1 else ">I"
        (base_decode_time,) = struct.unpack_from(fmt, data, pos)
        count = 0
        total = 0
        first_flags: int | None = None
        first_cto = 0
        for trun in _children(data, traf, b"trun"):
            version, tflags, pos = _full_box(data, trun)
            (sample_count,) = struct.unpack_from(">I", data, pos)
            pos += 4
            if tflags & 0x01:
                pos += 4  # data-offset
            first_sample_flags = None
            if tflags & 0x04:
                (first_sample_flags,) = struct.unpack_from(">I", data, pos)
                pos += 4
            per_sample = 4 * bin(tflags & 0xF00).count("1")
            if pos + per_sample * sample_count > trun.end:
                raise BoxError("trun sample table runs past its box")
            for index in range(sample_count):
                duration = default_duration
                sample_flags = default_flags
                cto = 0
                if tflags & 0x100:
                    (duration,) = struct.unpack_from(">I", data, pos)
                    pos += 4
                if tflags & 0x200:
                    pos += 4  # size
                if tflags & 0x400:
                    (sample_flags,) = struct.unpack_from(">I", data, pos)
                    pos += 4
                if tflags & 0x800:
                    (cto,) = struct.unpack_from(">i" if version == 1 else ">I", data, pos)
                    pos += 4
                if index == 0 and first_sample_flags is not None:
                    sample_flags = first_sample_flags
                if first_flags is None:
                    first_flags = sample_flags
                    first_cto = cto
                total += duration
            count += sample_count
        runs[track_id] = TrackRun(
            track_id=track_id,
            base_decode_time=base_decode_time,
            sample_count=count,
            duration=total,
            first_sample_is_sync=first_flags is not None and not first_flags & SAMPLE_IS_NON_SYNC,
            first_composition_offset=first_cto,
        )
    return FragmentInfo(runs)
