"""What the broadcast, relay and watch commands share: stop signals, the status line, stats.

Why here: each command is a thin shell (argparse + its media end); how a node runs until told to
stop, reports on the terminal and leaves its stats file must be the same for all three.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

from streamer.node.driver import SwarmNode
from streamer.node.stats_file import write_stats_json
from streamer.node.status import StatusPrinter, format_status


def install_stop_signals(stop: asyncio.Event) -> None:
    """SIGINT and SIGTERM set `stop` (the command then leaves cleanly) instead of killing us."""
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)


def attach_status_line(node: SwarmNode, interval_s: float) -> StatusPrinter:
    """Show the node's status on stderr: in place on a TTY, every `interval_s` otherwise."""
    printer = StatusPrinter(sys.stderr, interval_s=interval_s)

    def show(figures: dict[str, Any]) -> None:
        printer.show(format_status(node.config.role, figures), time.monotonic())

    node.on_status = show
    return printer


async def wait_for_end(
    stop: asyncio.Event,
    node: SwarmNode,
    duration_s: float | None = None,
    work: Awaitable[Any] | None = None,
) -> str:
    """Wait for the first of: a stop signal, the node failing, the duration, `work` finishing.

    Returns which one ("stopped", "failed", "duration", "work"); an exception of `work` is raised.
    """
    waits: dict[asyncio.Future[Any], str] = {
        asyncio.ensure_future(stop.wait()): "stopped",
        asyncio.ensure_future(node.done.wait()): "failed",
    }
    if duration_s is not None:
        waits[asyncio.ensure_future(asyncio.sleep(duration_s))] = "duration"
    work_future = asyncio.ensure_future(work) if work is not None else None
    if work_future is not None:
        waits[work_future] = "work"
    try:
        done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for future in waits:
            if future is not work_future:
                future.cancel()
    finished = next(iter(done))
    if finished is work_future:
        finished.result()  # raises the work's error
    elif work_future is not None:
        work_future.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await work_future
    return waits[finished]


async def run_until_stopped(
    node: SwarmNode, duration_s: float | None, status_interval_s: float
) -> None:
    """Start a relay or viewer node and run it until a stop signal, its duration or a failure."""
    await node.start()
    printer = attach_status_line(node, status_interval_s)
    stop = asyncio.Event()
    install_stop_signals(stop)
    await wait_for_end(stop, node, duration_s)
    printer.finish()
    if node.failure is not None:
        raise node.failure


def write_stats(path: str | Path | None, stats: dict[str, Any]) -> None:
    if path is not None:
        write_stats_json(path, stats)
