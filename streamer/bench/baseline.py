"""Run the client-server baseline: one HTTP origin and N viewers, the same clip and playout rules.

The origin releases the packaged clip's chunks on the wall clock (streamer.media.pacing, as the
broadcaster does) and the N `HttpViewer`s join `stagger_s` apart and each watch `duration_s`, all
over real sockets on 127.0.0.1. The origin and the viewers share this process's event loop (the
origin sends ~N x 1 Mbit/s, a few % of a core at N = 20).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from streamer.bench.figures import summarise_viewers, upload_ratio
from streamer.bench.http_viewer import HttpViewer
from streamer.bench.origin import Origin
from streamer.media import MediaOptions, open_media
from streamer.media.model import TranscodeMode
from streamer.media.pacing import live_chunks
from streamer.swarm.config import SwarmConfig

Progress = Callable[[str], None]


async def run_baseline(
    clip: Path,
    *,
    viewers: int,
    duration_s: float,
    stagger_s: float,
    chunk_seconds: float,
    transcode: TranscodeMode = "never",
    warmup_s: float = 2.0,
    sample_interval_s: float = 1.0,
    progress: Progress = lambda line: None,
) -> dict[str, Any]:
    """Figures, per-viewer stats and timelines of one baseline run."""
    options = MediaOptions(chunk_seconds=chunk_seconds, transcode=transcode, loop=True)
    stream = await asyncio.to_thread(open_media, str(clip), options)
    origin = Origin(stream.info.init_segment, chunk_seconds)
    started_s = time.time()
    release_task: asyncio.Task[None] | None = None
    timeline: dict[str, Any] = {"t_s": [], "source_bps": [], "viewer_lag_s": []}
    try:
        await origin.start()
        release_task = asyncio.create_task(_release(origin, stream))
        await asyncio.sleep(warmup_s)
        players = [
            HttpViewer(origin.url, duration_s, SwarmConfig(chunk_duration_s=chunk_seconds))
            for _ in range(viewers)
        ]
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            tasks: list[asyncio.Task[dict[str, Any]]] = []

            async def launch() -> None:
                for player in players:
                    tasks.append(asyncio.create_task(player.run(session)))
                    await asyncio.sleep(stagger_s)

            launcher = asyncio.create_task(launch())
            last = (time.time(), origin.bytes_sent)
            while not launcher.done() or not all(t.done() for t in tasks):
                await asyncio.sleep(sample_interval_s)
                now = time.time()
                rate_bps = 8 * (origin.bytes_sent - last[1]) / max(1e-9, now - last[0])
                last = (now, origin.bytes_sent)
                lags = [p.lag_samples[-1][1] if p.lag_samples else None for p in players]
                timeline["t_s"].append(round(now - started_s, 2))
                timeline["source_bps"].append(rate_bps)
                timeline["viewer_lag_s"].append(lags)
                watching = sum(1 for t in tasks if not t.done())
                progress(
                    f"client-server {now - started_s:5.0f}s  viewers {watching}/{viewers}  "
                    f"origin out {rate_bps / 1e6:6.2f} Mbit/s"
                )
            per_viewer = [t.result() for t in tasks]
    finally:
        if release_task is not None:
            release_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await release_task
        await origin.close()
        stream.close()
    figures = summarise_viewers(per_viewer)
    figures.update(
        {
            "viewers": viewers,
            "source_upload_ratio": upload_ratio(origin.bytes_sent, origin.window.stream_bytes),
            "source_bytes_uploaded": origin.bytes_sent,
            "stream_bytes": origin.window.stream_bytes,
            "origin_requests": origin.requests,
            "viewer_errors": sum(int(s["errors"]) for s in per_viewer),
            "wall_s": round(time.time() - started_s, 1),
        }
    )
    return {"figures": figures, "per_viewer": per_viewer, "timeline": timeline}


async def _release(origin: Origin, stream: Any) -> None:
    seq = 0
    async for chunk in live_chunks(stream):
        origin.release(seq, chunk.start_s, chunk.duration_s, chunk.data)
        seq += 1
