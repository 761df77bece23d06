"""`streamer watch`: a headless viewer that plays by the browser's rules and measures it.

Playback follows the core's model (start near the live edge, a deadline per chunk, skip a chunk
that did not come in time); `--output` records the init segment and every played chunk as one
playable MP4; `--stats-json` holds startup, continuity, lag and where the bytes came from.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from streamer.commands.relay import add_node_arguments, node_config
from streamer.node.driver import SwarmNode
from streamer.node.media_info import ChannelMedia
from streamer.node.recorder import Mp4Recorder
from streamer.node.runner import run_until_stopped, write_stats
from streamer.swarm import ChunkPlayed

NAME = "watch"
HELP = "watch a channel headless: play by the browser's rules, record it, measure it"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_node_arguments(parser, max_neighbours=10)
    parser.add_argument("--output", help="record what was played to this MP4 file")


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_watch(args))


async def _watch(args: argparse.Namespace) -> int:
    node = SwarmNode(node_config(args, "viewer", target_neighbours=6))
    recorder = Mp4Recorder(args.output) if args.output else None
    if recorder is not None:
        rec = recorder

        def on_media(media: ChannelMedia) -> None:
            rec.write_init(media.init_segment)

        def on_played(event: ChunkPlayed) -> None:
            rec.write_chunk(event.data)

        node.on_media = on_media
        node.on_chunk_played = on_played
    stats: dict[str, Any] = {}
    try:
        await run_until_stopped(node, args.duration, args.status_interval)
    finally:
        stats = node.stats()
        if recorder is not None:
            recorder.close()
            stats["output"] = str(recorder.path)
            stats["output_chunks"] = recorder.chunks_written
        await node.close()
        write_stats(args.stats_json, stats)
    return 0
