"""A broadcaster for the swarm benchmarks: FFmpeg's test pattern, packaged live and published
through a SwarmNode in this process (benchmarks/failover.py, benchmarks/peer_exchange.py,
benchmarks/signaling_load.py --flood); and the viewers' continuity over a window."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from streamer.media import MediaOptions, open_media
from streamer.media.pacing import live_chunks
from streamer.node.driver import NodeConfig, SwarmNode
from streamer.node.keyfile import BroadcasterKey
from streamer.node.media_info import media_description


@dataclass
class LiveSource:
    node: SwarmNode
    stream: Any
    releaser: asyncio.Task[None]

    async def close(self) -> None:
        self.releaser.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.releaser
        await self.node.close()
        self.stream.close()


async def start_live_source(
    server_url: str, channel: str, chunk_s: float, epoch: int, **node_options: Any
) -> LiveSource:
    """Join server_url as channel's broadcaster and release chunks of chunk_s as they are shot;
    node_options go to NodeConfig."""
    key = BroadcasterKey(Ed25519PrivateKey.generate(), "bench-secret")
    options = MediaOptions(chunk_seconds=chunk_s, video_bitrate_bps=400_000, loop=False)
    stream = await asyncio.to_thread(open_media, "testsrc:192x108@15", options)
    node = SwarmNode(
        NodeConfig(
            server_url,
            channel,
            "broadcaster",
            secret=key.secret,
            signing_key=key.signing_key,
            chunk_seconds=chunk_s,
            epoch=epoch,
            **node_options,
        )
    )
    await node.start()
    await node.publish_media(media_description(stream.info, key.public_key_raw, 0, 1, epoch))

    async def release() -> None:
        async for chunk in live_chunks(stream):
            node.publish_chunk(1 + chunk.seq, chunk.data, chunk.start_s, chunk.duration_s)

    return LiveSource(node, stream, asyncio.create_task(release()))


PLAY_FIGURES = ("chunks_played", "chunks_late", "chunks_missed")


def window_continuity(before: dict[str, Any], after: dict[str, Any]) -> float | None:
    """Chunks on time / chunks due between two stats snapshots (the core's rule)."""
    played, late, missed = (int(after[k]) - int(before[k]) for k in PLAY_FIGURES)
    due = played + late + missed
    return played / due if due else None


async def start_playing(viewers: list[SwarmNode], timeout_s: float = 60.0) -> None:
    """Start every viewer and wait until each has played 4 chunks (SystemExit after timeout_s)."""
    for viewer in viewers:
        await viewer.start()
    deadline = time.monotonic() + timeout_s
    while not all((v.stats().get("chunks_played") or 0) >= 4 for v in viewers):
        if time.monotonic() > deadline:
            raise SystemExit(f"the viewers did not start playing within {timeout_s:.0f} s")
        await asyncio.sleep(0.2)
