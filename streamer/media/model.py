"""The media pipeline's public value types: options in, stream facts and chunks out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

TranscodeMode = Literal["auto", "always", "never"]


@dataclass(frozen=True)
class MediaOptions:
    """How to turn an input into chunks. Defaults suit a 1 Mbit/s live channel."""

    chunk_seconds: float = 1.0
    video_bitrate_bps: int = 1_000_000
    transcode: TranscodeMode = "auto"
    loop: bool = False
    audio_bitrate_bps: int = 128_000
    # Stop after this much media (seconds of presentation time); None means until the input ends.
    duration_s: float | None = None
    # Network and device inputs: give up when opening or a read takes longer than this.
    open_timeout_s: float = 10.0
    read_timeout_s: float = 10.0
    # libx264 speed/quality trade-off when transcoding; veryfast keeps 720p30 live on 2 cores.
    x264_preset: str = "veryfast"
    # Copy mode: a GOP longer than this (seconds) anywhere in the input turns on re-encoding
    # (`transcode="never"`: a warning). None: twice `chunk_seconds`.
    gop_limit_s: float | None = None

    def __post_init__(self) -> None:
        if not 0.1 <= self.chunk_seconds <= 30:
            raise ValueError("chunk_seconds must be between 0.1 and 30")
        if self.video_bitrate_bps < 10_000:
            raise ValueError("video_bitrate_bps must be at least 10k")
        if self.transcode not in ("auto", "always", "never"):
            raise ValueError("transcode must be auto, always or never")
        if self.duration_s is not None and self.duration_s <= 0:
            raise ValueError("duration_s must be positive")
        if self.gop_limit_s is not None and self.gop_limit_s < self.chunk_seconds:
            raise ValueError("gop_limit_s must be at least chunk_seconds")


@dataclass(frozen=True)
class MediaInfo:
    """What a player needs before the first chunk: the type string and the init segment."""

    mime_type: (
        str  # for MediaSource.isTypeSupported, e.g. 'video/mp4; codecs="avc1.64001f,mp4a.40.2"'
    )
    codecs: str  # e.g. 'avc1.64001f,mp4a.40.2'
    init_segment: bytes  # ftyp + moov
    chunk_seconds: float
    has_video: bool
    has_audio: bool
    width: int | None
    height: int | None
    video_transcoded: bool = False
    audio_transcoded: bool = False
    source_video_codec: str | None = None  # input codec name as FFmpeg calls it, e.g. 'vp9'
    source_audio_codec: str | None = None
    is_live: bool = False  # camera, network or synthetic source (cannot loop, cannot seek)


@dataclass(frozen=True)
class Chunk:
    """One or more complete moof+mdat fragments, starting on a video keyframe."""

    seq: int
    start_s: float  # presentation time of the first sample, relative to the stream start
    duration_s: float
    data: bytes

    @property
    def size_bytes(self) -> int:
        return len(self.data)
