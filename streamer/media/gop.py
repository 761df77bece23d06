"""Watch the keyframe intervals of the whole input, not only the probe's first seconds. Pure.

A chunk starts on a keyframe, so a copied GOP longer than a chunk makes a chunk as long as the GOP,
and viewers' lag grows by the longest chunk. Encoders (OBS "auto", cameras, IP encoders) send 2-10 s
GOPs, scene-cut keyframes and GOPs that change length mid-stream. `GopWatcher` follows the open GOP
packet by packet (decode order) and says once when it has grown past the limit; `long_gop_action`
says what the pipeline then does.

Rules: no I/O, no clock; times are media seconds passed in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from streamer.media.model import TranscodeMode

GopAction = Literal["switch", "keep"]
"""'switch': re-encode from the open GOP's keyframe on; 'keep': copy on, with long chunks."""


def default_gop_limit_s(chunk_seconds: float) -> float:
    """A copied GOP may be up to twice the chunk length before the pipeline re-encodes."""
    return 2.0 * chunk_seconds


@dataclass
class GopWatcher:
    """Follows video packets in decode order; `note` returns True once, when a GOP is too long.

    A GOP's span is measured from its keyframe to the end of its latest frame, so a 10 s GOP is
    reported while still open, about `limit_s` after its keyframe (not 10 s later).
    """

    limit_s: float
    frame_duration_s: float = 0.0
    gop_start_s: float | None = None  # time of the open GOP's keyframe (first packet if none yet)
    open_span_s: float = 0.0
    longest_s: float = 0.0  # longest GOP seen so far (closed or open)
    reported: bool = False
    gops: int = 0  # keyframes seen

    def note(self, time_s: float, is_keyframe: bool) -> bool:
        """One video packet: its decode time and whether it is a keyframe."""
        if is_keyframe or self.gop_start_s is None:
            self.gop_start_s = time_s
            self.open_span_s = 0.0
            if is_keyframe:
                self.gops += 1
        # Decode times never go back in a valid stream; a jump back (bad input) restarts the GOP.
        if time_s < self.gop_start_s:
            self.gop_start_s = time_s
        span_s = time_s + self.frame_duration_s - self.gop_start_s
        self.open_span_s = max(self.open_span_s, span_s)
        self.longest_s = max(self.longest_s, self.open_span_s)
        slack_s = max(self.frame_duration_s, 0.001)
        if not self.reported and self.open_span_s > self.limit_s + slack_s:
            self.reported = True
            return True
        return False


def long_gop_action(mode: TranscodeMode) -> GopAction:
    """`never` keeps copying (long chunks); anything else switches to re-encoding."""
    return "keep" if mode == "never" else "switch"


def long_gop_message(action: GopAction, limit_s: float, chunk_seconds: float) -> str:
    """The one warning a user sees when a long GOP first turns up."""
    if action == "switch":
        return (
            f"keyframes more than {limit_s:g} s apart: re-encoding video from here on "
            f"(keyframe every {chunk_seconds:g} s; set your encoder's keyframe interval to "
            f"{chunk_seconds:g} s to save the CPU)"
        )
    return (
        f"keyframes more than {limit_s:g} s apart, kept as they are (--transcode never): "
        "chunks are as long as the GOPs, and viewers' lag grows by the longest chunk"
    )


def gop_note(action: GopAction | None, longest_s: float) -> str | None:
    """A short note for the status line: what the watcher did, and the longest GOP so far."""
    if action == "switch":
        return "re-encoding (long GOP)"
    if action == "keep":
        return f"long GOP {longest_s:.1f}s: lag +{longest_s:.1f}s"
    return None
