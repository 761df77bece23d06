"""Run the server in the foreground until SIGINT/SIGTERM (shared by `streamer serve` and
`python -m signaling`)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import resource
import signal
import sys

from signaling.app import start_server
from signaling.config import ServerConfig
from streamer.errors import UserError


def raise_fd_limit() -> int:
    """Lift the soft open-files limit to the hard one: each peer is a socket. Returns the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            return hard
    return soft


#: Young-generation threshold: fewer, cheaper collections under a burst of joins.
GC_GEN0_THRESHOLD = 50_000
#: The full (gen2) collection runs on this timer instead of in the middle of a join burst.
FULL_GC_INTERVAL_S = 300.0


def tune_gc() -> None:
    """Keep full-heap GC pauses out of the join path (standalone server only, not when embedded).

    Measured with benchmarks/signaling_load.py: CPython's allocation-triggered full collections
    scan every live peer's objects, and at 5,000 peers they pushed the p99 join latency from
    ~17 ms to ~200 ms. Startup objects are frozen (never scanned again), young collections are
    made rarer, and the full collection runs every FULL_GC_INTERVAL_S from `_full_gc_loop`, so
    cyclic garbage stays bounded.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_GEN0_THRESHOLD, 50, 1_000_000)


async def _full_gc_loop() -> None:
    while True:
        await asyncio.sleep(FULL_GC_INTERVAL_S)
        gc.collect()


async def serve_forever(config: ServerConfig) -> None:
    try:
        server = await start_server(config)
    except OSError as error:
        raise UserError(str(error)) from None
    # The first line of stdout is the URL: scripts (and the load benchmark) read it.
    print(f"signaling server listening on {server.url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    collector = loop.create_task(_full_gc_loop())
    try:
        await stop.wait()
    finally:
        collector.cancel()
        await server.close()
        print("signaling server stopped", file=sys.stderr, flush=True)


def run(config: ServerConfig) -> int:
    raise_fd_limit()
    tune_gc()
    asyncio.run(serve_forever(config))
    return 0
