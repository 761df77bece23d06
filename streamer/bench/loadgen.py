"""Many headless viewers in one process: the load a relay's capacity is measured with.

Each viewer is a full `SwarmNode` (its own signaling session, its own aiortc peer connections,
the browser's playout rules) in one asyncio loop, so one process stands in for N `streamer
watch` processes without N interpreters on a 2-core machine. The viewers are made to load the
relay and nothing else:

- they do not upload (their hello carries no UPLOAD capability, requests to them are refused);
- they link only to peers whose role is allowed (`relay`; `broadcaster` too with
  `with_source`), so they never fetch from each other.

Lines on stdout tell a parent where the run is: `joined N` once every viewer has started,
`leaving` when the measuring window ends (before the viewers close). The stats file holds each
viewer's stats and this process's CPU.

Rules: every viewer leaves by `duration_s` after the last one joined; a viewer that cannot join
is counted (continuity 0), never waited for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from streamer.bench.figures import percentile
from streamer.errors import UserError
from streamer.node.driver import NodeConfig, SwarmNode

logger = logging.getLogger(__name__)

STATS_KEYS = (
    "peer_id",
    "continuity",
    "startup_s",
    "lag_s_p50",
    "lag_s_p95",
    "chunks_played",
    "chunks_late",
    "chunks_missed",
    "stall_s",
    "lag_added_s",
    "startup_phases",
    "not_on_time",
    "timeouts",
    "bytes_from_source",
    "bytes_from_peers",
    "bytes_uploaded",
    "transport_bytes_received",
    "neighbour_paths",
    "neighbour_figures",
    "complete_after_release_s_p50",
    "complete_after_release_s_p95",
    "moved",
    "bytes_duplicate",
    "loop_lag",
)


@dataclass
class LoadOptions:
    server_url: str
    channel: str = "live"
    viewers: int = 10
    duration_s: float = 30.0
    """How long every viewer watches after the last one joined (the measuring window)."""
    stagger_s: float = 0.3
    with_source: bool = False
    join_timeout_s: float = 20.0
    status_interval_s: float = 1.0
    neighbours: int = 2
    """A viewer's neighbours at most (the relay, maybe the broadcaster)."""
    fallback_server_urls: tuple[str, ...] = ()
    """The cluster's other servers (each viewer fails over to them)."""


@dataclass
class LoadResult:
    viewers: list[dict[str, Any]] = field(default_factory=list)
    joined: int = 0
    failed_joins: list[str] = field(default_factory=list)
    cpu_s: float = 0.0
    wall_s: float = 0.0
    window_cpu_s: float | None = None
    window_wall_s: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "viewers": self.viewers,
            "joined": self.joined,
            "failed_joins": self.failed_joins,
            "cpu_s": self.cpu_s,
            "wall_s": self.wall_s,
            "cpu_cores": self.cpu_s / self.wall_s if self.wall_s else None,
            "window_cpu_s": self.window_cpu_s,
            "window_wall_s": self.window_wall_s,
            "window_cpu_cores": (
                self.window_cpu_s / self.window_wall_s
                if self.window_cpu_s is not None and self.window_wall_s
                else None
            ),
        }


def viewer_config(options: LoadOptions, index: int) -> NodeConfig:
    """A viewer that never uploads and links only to relays (and the broadcaster, if asked)."""
    roles = ("relay", "broadcaster") if options.with_source else ("relay",)
    return NodeConfig(
        server_url=options.server_url,
        fallback_server_urls=options.fallback_server_urls,
        channel=options.channel,
        role="viewer",
        max_neighbours=options.neighbours,
        target_neighbours=1 if not options.with_source else options.neighbours,
        status_interval_s=options.status_interval_s,
        seed=index,
        upload=False,
        neighbour_roles=frozenset(roles),
    )


def status_line(nodes: list[SwarmNode], total: int) -> str:
    """One line over all viewers: how many joined and play, continuity min, lag p50."""
    conts: list[float] = []
    lags: list[float] = []
    for node in nodes:
        core = node.core
        pb = core.playback if core is not None else None
        if pb is not None and pb.continuity is not None:
            conts.append(pb.continuity)
        if pb is not None and pb.lags_s:
            lags.append(pb.lags_s[-1])
    parts = [f"loadgen viewers {len(nodes)}/{total}", f"playing {len(conts)}"]
    if conts:
        parts.append(f"cont min {min(conts):.3f}")
    lag = percentile(lags, 0.5)
    if lag is not None:
        parts.append(f"lag p50 {lag:.1f}s")
    return "  ".join(parts)


async def run_load(
    options: LoadOptions,
    say: Callable[[str], None] = lambda line: None,
    stop: asyncio.Event | None = None,
) -> LoadResult:
    """Join the viewers `stagger_s` apart, watch `duration_s`, leave; every viewer's stats.

    `stop` set (a signal) ends the joins or the window early; the stats are still gathered."""
    stop = stop or asyncio.Event()
    nodes: list[SwarmNode] = []
    result = LoadResult()
    started_wall, started_cpu = time.monotonic(), time.process_time()
    status_task = asyncio.create_task(_status_loop(nodes, options))
    try:
        for i in range(options.viewers):
            node = SwarmNode(viewer_config(options, i))
            try:
                await asyncio.wait_for(node.start(), options.join_timeout_s)
            except (UserError, TimeoutError) as error:
                result.failed_joins.append(str(error) or "join timed out")
                await node.close()
            else:
                nodes.append(node)
            if await _stopped(stop, options.stagger_s):
                break
        result.joined = len(nodes)
        say(f"joined {len(nodes)}")
        window_wall, window_cpu = time.monotonic(), time.process_time()
        await _stopped(stop, options.duration_s)
        result.window_wall_s = time.monotonic() - window_wall
        result.window_cpu_s = time.process_time() - window_cpu
        say("leaving")
    finally:
        status_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await status_task
        for viewer in nodes:
            stats = viewer.stats()
            result.viewers.append({key: stats.get(key) for key in STATS_KEYS})
        result.viewers.extend({"continuity": 0.0, "missing": True} for _ in result.failed_joins)
        await asyncio.gather(*(n.close() for n in nodes), return_exceptions=True)
        result.cpu_s = time.process_time() - started_cpu
        result.wall_s = time.monotonic() - started_wall
    return result


async def _stopped(stop: asyncio.Event, timeout_s: float) -> bool:
    """Wait up to timeout_s; True when `stop` was set meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout_s)
    return stop.is_set()


async def _status_loop(nodes: list[SwarmNode], options: LoadOptions) -> None:
    while True:
        await asyncio.sleep(options.status_interval_s)
        print(status_line(nodes, options.viewers), file=sys.stderr, flush=True)
