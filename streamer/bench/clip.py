"""The benchmark stream: an input transcoded once to a fixed bitrate as one fragmented MP4 file.

Why: the swarm and the client-server baseline must carry the very same chunks, and the broadcaster
should spend no CPU encoding during the measurement; so the input is packaged once (init segment +
keyframe-aligned chunks at `bitrate_bps`) and both sides then only remux it with `--loop`.
The result is cached by input path, size, mtime and settings.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from streamer.media import MediaOptions, open_media

ROOT = Path(__file__).resolve().parent.parent.parent
SAMPLE = ROOT / "media" / "sample.mp4"


def default_cache_dir() -> Path:
    return Path(tempfile.gettempdir()) / f"streamer-bench-{os.getuid()}"


def clip_name(input_path: Path, bitrate_bps: int, chunk_seconds: float) -> str:
    """A file name unique to the input's identity and the packaging settings."""
    try:
        st = input_path.stat()
        identity = f"{input_path.resolve()}:{st.st_size}:{st.st_mtime_ns}"
    except OSError:
        identity = str(input_path)
    digest = hashlib.sha256(f"{identity}:{bitrate_bps}:{chunk_seconds}".encode()).hexdigest()
    return f"clip-{digest[:16]}.mp4"


def make_clip(
    input_path: Path, bitrate_bps: int, chunk_seconds: float, cache_dir: Path | None = None
) -> Path:
    """The packaged clip (made on first use). MediaError (a UserError) for unreadable input."""
    cache = cache_dir or default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    clip = cache / clip_name(input_path, bitrate_bps, chunk_seconds)
    if clip.exists():
        return clip
    options = MediaOptions(
        chunk_seconds=chunk_seconds, video_bitrate_bps=bitrate_bps, transcode="always"
    )
    tmp = clip.with_name(f".{clip.name}.{os.getpid()}.tmp")
    try:
        with open_media(str(input_path), options) as stream, open(tmp, "wb") as out:
            out.write(stream.info.init_segment)
            for chunk in stream.chunks():
                out.write(chunk.data)
        os.replace(tmp, clip)
    finally:
        tmp.unlink(missing_ok=True)
    return clip
