"""Write a stream to a directory: init.mp4, one file per chunk, manifest.json (for tests and tools).

Files are written to a temporary name and renamed, and the manifest last, so a reader never sees a
half-written chunk listed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamer.media.errors import MediaError
from streamer.media.model import Chunk
from streamer.media.stream import MediaStream

INIT_NAME = "init.mp4"
MANIFEST_NAME = "manifest.json"


def chunk_file_name(seq: int) -> str:
    return f"chunk-{seq:06d}.m4s"


@dataclass(frozen=True)
class PackageSummary:
    chunks: int
    media_s: float
    total_bytes: int
    manifest_path: Path


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_package(
    stream: MediaStream,
    out_dir: Path,
    on_chunk: Callable[[Chunk], None] | None = None,
) -> PackageSummary:
    """Write every chunk of `stream` into `out_dir` (created if missing) as fast as it comes."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise MediaError(f"cannot create output directory {out_dir}: {error.strerror}") from error
    if not os.access(out_dir, os.W_OK):
        raise MediaError(f"output directory is not writable: {out_dir}")
    info = stream.info
    entries: list[dict[str, Any]] = []
    total = len(info.init_segment)
    media_s = 0.0
    try:
        _write_atomic(out_dir / INIT_NAME, info.init_segment)
        for chunk in stream.chunks():
            name = chunk_file_name(chunk.seq)
            _write_atomic(out_dir / name, chunk.data)
            entries.append(
                {
                    "seq": chunk.seq,
                    "file": name,
                    "start_s": round(chunk.start_s, 6),
                    "duration_s": round(chunk.duration_s, 6),
                    "size_bytes": chunk.size_bytes,
                }
            )
            total += chunk.size_bytes
            media_s = chunk.start_s + chunk.duration_s
            if on_chunk is not None:
                on_chunk(chunk)
    except OSError as error:
        raise MediaError(f"cannot write to {out_dir}: {error.strerror or error}") from error
    if not entries:
        raise MediaError("the input produced no chunks")
    manifest = {
        "codec": info.mime_type,
        "codecs": info.codecs,
        "init": INIT_NAME,
        "chunk_seconds": info.chunk_seconds,
        "has_video": info.has_video,
        "has_audio": info.has_audio,
        "width": info.width,
        "height": info.height,
        "video_transcoded": info.video_transcoded,
        "audio_transcoded": info.audio_transcoded,
        "duration_s": round(media_s, 6),
        "chunks": entries,
    }
    manifest_path = out_dir / MANIFEST_NAME
    _write_atomic(manifest_path, json.dumps(manifest, indent=1).encode())
    return PackageSummary(len(entries), media_s, total, manifest_path)
