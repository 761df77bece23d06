"""The client-server baseline as separate processes, so each side runs in its own namespace.

    python -m streamer.netbed.baseline origin CLIP --host IP --port P --stats-json F
    python -m streamer.netbed.baseline viewer URL --duration S --stats-json F

The origin and the viewer are streamer.bench's (origin.Origin, http_viewer.HttpViewer): the same
playout rules as `streamer watch`, over the bed's links instead of loopback. The origin writes
the bytes it sent and the stream bytes it released when it is stopped (SIGTERM).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp

from streamer.bench.figures import upload_ratio
from streamer.bench.http_viewer import HttpViewer
from streamer.bench.origin import Origin
from streamer.media import MediaOptions, open_media
from streamer.media.pacing import live_chunks
from streamer.swarm.config import SwarmConfig


async def _origin(args: argparse.Namespace) -> dict[str, Any]:
    options = MediaOptions(chunk_seconds=args.chunk_seconds, transcode="never", loop=True)
    stream = await asyncio.to_thread(open_media, args.clip, options)
    origin = Origin(stream.info.init_segment, args.chunk_seconds)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    async def release() -> None:
        seq = 0
        async for chunk in live_chunks(stream):
            origin.release(seq, chunk.start_s, chunk.duration_s, chunk.data)
            seq += 1

    releaser: asyncio.Task[None] | None = None
    try:
        await origin.start(args.host, args.port)
        print(f"origin: {origin.url}", flush=True)
        releaser = asyncio.create_task(release())
        await stop.wait()
    finally:
        if releaser is not None:
            releaser.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await releaser
        await origin.close()
        stream.close()
    return {
        "role": "origin",
        "bytes_uploaded": origin.bytes_sent,
        "stream_bytes": origin.window.stream_bytes,
        "upload_ratio": upload_ratio(origin.bytes_sent, origin.window.stream_bytes),
        "requests": origin.requests,
    }


async def _viewer(args: argparse.Namespace) -> dict[str, Any]:
    player = HttpViewer(args.url, args.duration, SwarmConfig(chunk_duration_s=args.chunk_seconds))
    async with aiohttp.ClientSession() as session:
        return await player.run(session)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m streamer.netbed.baseline")
    sub = parser.add_subparsers(dest="side", required=True)
    origin = sub.add_parser("origin")
    origin.add_argument("clip")
    origin.add_argument("--host", required=True)
    origin.add_argument("--port", type=int, required=True)
    viewer = sub.add_parser("viewer")
    viewer.add_argument("url")
    viewer.add_argument("--duration", type=float, required=True)
    for p in (origin, viewer):
        p.add_argument("--chunk-seconds", type=float, default=1.0)
        p.add_argument("--stats-json", required=True)
    args = parser.parse_args(argv)
    stats = asyncio.run(_origin(args) if args.side == "origin" else _viewer(args))
    Path(args.stats_json).write_text(json.dumps(stats, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
