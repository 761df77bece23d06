"""Cut the muxer's fragmented-MP4 byte stream into an init segment, fragments, then chunks.

Pure code: bytes go in as the muxer writes them, whole units come out. The splitter only cuts at
top-level box boundaries (ftyp+moov | moof+mdat | moof+mdat ...), so every chunk is made of complete
fragments and init + chunks k..n is a valid fragmented MP4 for any k.
"""

from __future__ import annotations

from dataclasses import dataclass

from streamer.media.boxes import BoxError, InitInfo, parse_init, parse_moof, read_box_header
from streamer.media.model import Chunk

# Boxes that may sit before a moof and belong to the fragment that follows.
_FRAGMENT_PREFIX = {b"styp", b"sidx", b"prft", b"emsg"}
# Boxes after the init segment that carry no media (the trailer's random-access index, padding).
_IGNORED = {b"mfra", b"free", b"skip"}


@dataclass(frozen=True)
class Fragment:
    """One moof+mdat pair and its timing on the primary track (video, else audio)."""

    data: bytes
    decode_time: int  # tfdt of the primary track, in its timescale
    presentation_time: int  # decode_time + composition offset of the first sample
    duration: int  # sum of the primary track's sample durations in this fragment
    timescale: int
    starts_with_sync: bool


class FragmentSplitter:
    """Feed muxer output with `feed`; collect the init segment once, then fragments."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._init_parts: list[bytes] = []
        self.init_segment: bytes | None = None
        self.init_info: InitInfo | None = None
        self._primary: int | None = None
        self._pending: list[bytes] = []  # prefix boxes + moof waiting for their mdat
        self._pending_moof: bytes | None = None

    def feed(self, data: bytes) -> list[Fragment]:
        """Add bytes; return the fragments they complete (maybe none)."""
        self._buffer += data
        fragments: list[Fragment] = []
        offset = 0
        while True:
            box = read_box_header(self._buffer, offset)
            if box is None:
                break
            raw = bytes(self._buffer[box.start : box.end])
            offset = box.end
            fragment = self._take_box(box.type, raw)
            if fragment is not None:
                fragments.append(fragment)
        del self._buffer[:offset]
        return fragments

    def finish(self) -> None:
        """The muxer is done: anything left over is a truncated box."""
        if self._buffer or self._pending_moof is not None:
            raise BoxError("muxer output ended inside a box")

    def _take_box(self, box_type: bytes, raw: bytes) -> Fragment | None:
        if self.init_segment is None:
            if box_type == b"mdat":
                raise BoxError("mdat before any moof: the stream is not fragmented")
            if box_type != b"moof" and box_type not in _FRAGMENT_PREFIX:
                self._init_parts.append(raw)
                return None
            self._close_init()
        if box_type in _IGNORED:
            return None
        if box_type in _FRAGMENT_PREFIX:
            self._pending.append(raw)
            return None
        if box_type == b"moof":
            if self._pending_moof is not None:
                raise BoxError("two moof boxes without an mdat between them")
            self._pending_moof = raw
            return None
        if box_type == b"mdat":
            if self._pending_moof is None:
                raise BoxError("mdat without a moof")
            fragment = self._fragment(self._pending_moof, raw)
            self._pending_moof = None
            return fragment
        raise BoxError(f"unexpected top-level box {box_type!r} in a fragmented stream")

    def _close_init(self) -> None:
        data = b"".join(self._init_parts)
        info = parse_init(data)
        self.init_segment = data
        self.init_info = info
        primary = info.track_by_handler("vide") or info.track_by_handler("soun")
        if primary is None:
            raise BoxError("init segment has neither a video nor an audio track")
        self._primary = primary.track_id

    def _fragment(self, moof: bytes, mdat: bytes) -> Fragment:
        assert self.init_info is not None and self._primary is not None
        box = read_box_header(moof, 0)
        assert box is not None
        info = parse_moof(moof, box, self.init_info)
        run = info.runs.get(self._primary)
        track = self.init_info.tracks[self._primary]
        data = b"".join([*self._pending, moof, mdat])
        self._pending = []
        if run is None:  # a fragment with no sample of the primary track (rare: audio tail)
            return Fragment(data, -1, -1, 0, track.timescale, starts_with_sync=False)
        return Fragment(
            data=data,
            decode_time=run.base_decode_time,
            presentation_time=run.base_decode_time + run.first_composition_offset,
            duration=run.duration,
            timescale=track.timescale,
            starts_with_sync=run.first_sample_is_sync,
        )


class ChunkAssembler:
    """Group fragments into chunks of about `chunk_seconds`, each opening on a sync fragment.

    A GOP shorter than the chunk gives several fragments per chunk; a fragment is never split.

    `close_early` (live inputs): close a chunk as soon as its fragments add up to a chunk, instead
    of when the next sync fragment shows up (one GOP later: the muxer writes a fragment only when
    the keyframe after it arrives). The muxer cuts fragments at keyframes only, so the next
    fragment still opens on one; a fragment with no sample of the primary track that comes
    between chunks opens the next chunk instead of being glued to the last.
    """

    def __init__(self, chunk_seconds: float, close_early: bool = False) -> None:
        self.chunk_seconds = chunk_seconds
        self.close_early = close_early
        # Cut a little early rather than make a chunk of two GOPs out of jitter in keyframe times.
        self._tolerance_s = min(0.1 * chunk_seconds, 0.1)
        self._parts: list[Fragment] = []
        self._origin: int | None = None
        self._seq = 0

    def add(self, fragment: Fragment) -> Chunk | None:
        """Add the next fragment; return the chunk it closes (the one before it, or with
        `close_early` the one it completes)."""
        closed: Chunk | None = None
        timed = [part for part in self._parts if part.decode_time >= 0]
        if timed and fragment.starts_with_sync and fragment.decode_time >= 0:
            elapsed = (fragment.decode_time - timed[0].decode_time) / fragment.timescale
            if elapsed >= self.chunk_seconds - self._tolerance_s:
                closed = self._close()
        if not self._parts and fragment.decode_time < 0 and not self.close_early:
            # Nothing of the primary track: keep it with the chunk before, or drop it at the start.
            return closed
        self._parts.append(fragment)
        if self.close_early and closed is None and fragment.decode_time >= 0:
            first = next(part for part in self._parts if part.decode_time >= 0)
            end = fragment.decode_time + fragment.duration
            if (end - first.decode_time) / fragment.timescale >= (
                self.chunk_seconds - self._tolerance_s
            ):
                closed = self._close()
        return closed

    def finish(self) -> Chunk | None:
        """The last, possibly short, chunk (None if nothing of the primary track is left)."""
        if not any(part.decode_time >= 0 for part in self._parts):
            return None
        return self._close()

    def _close(self) -> Chunk:
        first = next((part for part in self._parts if part.decode_time >= 0), self._parts[0])
        if self._origin is None:
            self._origin = first.presentation_time
        duration = sum(part.duration for part in self._parts)
        chunk = Chunk(
            seq=self._seq,
            start_s=(first.presentation_time - self._origin) / first.timescale,
            duration_s=duration / first.timescale,
            data=b"".join(part.data for part in self._parts),
        )
        self._seq += 1
        self._parts = []
        return chunk
