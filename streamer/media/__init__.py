"""Media pipeline: any input FFmpeg opens -> an fMP4 init segment + keyframe-aligned chunks.

Public API (others build on these names): `MediaOptions`, `MediaInfo`, `Chunk`, `MediaStream`,
`open_media`, `open_push`, `live_chunks`, `MediaError`.
"""

from streamer.media.errors import MediaError
from streamer.media.model import Chunk, MediaInfo, MediaOptions
from streamer.media.pacing import LiveSchedule, live_chunks
from streamer.media.stream import MediaStream, open_media, open_push

__all__ = [
    "Chunk",
    "LiveSchedule",
    "MediaError",
    "MediaInfo",
    "MediaOptions",
    "MediaStream",
    "live_chunks",
    "open_media",
    "open_push",
]
