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


def keyframes_fit(facts: StreamFacts, limit_s: float) -> bool:
    """True when every keyframe interval seen is at most limit_s (one frame of slack)."""
    if facts.max_keyframe_interval_s is None:
        return False
    slack_s = max(facts.frame_duration_s or 0.0, 0.001)
    return facts.max_keyframe_interval_s <= limit_s + slack_s


def decide(
    facts: StreamFacts,
    chunk_seconds: float,
    mode: TranscodeMode,
    gop_watched: bool = False,
    gop_limit_s: float | None = None,
) -> Plan:
    """Copy or encode, per stream; `never` on a codec browsers cannot play is an error.

    H.264 whose keyframes the probe saw at most `gop_limit_s` apart (default: twice the chunk) is
    copied: each GOP becomes a chunk, and the GOP watcher follows the rest of the input. With
    longer GOPs, `auto` re-encodes and `never` copies them as they are (chunks as long as the
    GOPs: viewers' lag grows by about the longest). `gop_watched`: keyframe intervals were not
    measured up front (a live source, where a probe would delay the start by its length); H.264
    is copied and the GOP watcher decides.
    """
    limit_s = gop_limit_s if gop_limit_s is not None else 2.0 * chunk_seconds
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
        elif (facts.max_keyframe_interval_s is None and gop_watched) or keyframes_fit(
            facts, limit_s
        ):
            video = "copy"
        else:
            interval = facts.max_keyframe_interval_s
            seen = f"{interval:.2f} s" if interval is not None else "unknown"
            if mode == "never" and interval is not None:
                video = "copy"
                reasons.append(
                    f"H.264 keyframe interval {seen} kept (--transcode never): chunks up to "
                    f"{seen} long, viewers' lag grows by about that"
                )
            else:
                video = "encode"
                reasons.append(f"H.264 keyframe interval {seen} > GOP limit {limit_s:g} s")
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
