"""Decide, per stream, whether to copy the input's packets or re-encode them. Pure.

Browsers play H.264 + AAC in fragmented MP4 everywhere, so those are copied untouched (cheap: no
decoding). Everything else, and H.264 whose keyframes are further apart than a chunk (a chunk must
start on a keyframe), is re-encoded with libx264 / AAC.
"""

from __future__ import annotations

from dataclasses import dataclass

from streamer.media.errors import MediaError
from streamer.media.model import TranscodeMode

COPYABLE_VIDEO = {"h264"}
COPYABLE_AUDIO = {"aac"}


@dataclass(frozen=True)
class StreamFacts:
    """What a short probe of the input found."""

    video_codec: str | None  # FFmpeg codec name, None when there is no video stream
    audio_codec: str | None
    max_keyframe_interval_s: float | None  # longest distance seen between video keyframes
    frame_duration_s: float | None  # typical video frame duration


@dataclass(frozen=True)
class Plan:
    """'copy', 'encode', or None (no such stream) for each kind."""

    video: str | None
    audio: str | None
    reason: str  # why, for status output


def keyframes_fit(facts: StreamFacts, chunk_seconds: float) -> bool:
    """True when every keyframe interval seen fits in one chunk (one frame of slack)."""
    if facts.max_keyframe_interval_s is None:
        return False
    slack_s = max(facts.frame_duration_s or 0.0, 0.001)
    return facts.max_keyframe_interval_s <= chunk_seconds + slack_s


def decide(
    facts: StreamFacts, chunk_seconds: float, mode: TranscodeMode, gop_watched: bool = False
) -> Plan:
    """Copy or encode, per stream; `never` on an input that needs encoding is an error.

    `gop_watched`: keyframe intervals were not measured up front (a live source, where a probe
    would delay the start by its length); H.264 is copied and the GOP watcher switches to
    re-encoding if a GOP turns out too long.
    """
    if facts.video_codec is None and facts.audio_codec is None:
        raise MediaError("input has neither a video nor an audio stream")
    video: str | None = None
    audio: str | None = None
    reasons: list[str] = []
    if facts.video_codec is not None:
        if mode == "always":
            video = "encode"
            reasons.append("video re-encoded (--transcode always)")
        elif facts.video_codec not in COPYABLE_VIDEO:
            video = "encode"
            reasons.append(f"video {facts.video_codec} is not H.264")
        elif facts.max_keyframe_interval_s is None and gop_watched:
            video = "copy"
        elif not keyframes_fit(facts, chunk_seconds):
            video = "encode"
            interval = facts.max_keyframe_interval_s
            seen = f"{interval:.2f} s" if interval is not None else "unknown"
            reasons.append(f"H.264 keyframe interval {seen} > chunk {chunk_seconds:g} s")
        else:
            video = "copy"
    if facts.audio_codec is not None:
        if mode == "always":
            audio = "encode"
        elif facts.audio_codec not in COPYABLE_AUDIO:
            audio = "encode"
            reasons.append(f"audio {facts.audio_codec} is not AAC")
        else:
            audio = "copy"
    if mode == "never" and "encode" in (video, audio):
        raise MediaError(
            "input needs transcoding but --transcode never was given: " + "; ".join(reasons)
        )
    reason = "; ".join(reasons) if reasons else "H.264/AAC copied without re-encoding"
    return Plan(video=video, audio=audio, reason=reason)
