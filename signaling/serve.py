"""Run the server in the foreground until SIGINT/SIGTERM (shared by `streamer serve` and
`python -m signaling`)."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import gc
import logging
import os
import resource
import signal
import sys
import time
from collections.abc import Callable

from signaling.app import start_server
from signaling.config import ServerConfig
from signaling.state import STATE, ServerState
from streamer.errors import UserError

log = logging.getLogger(__name__)


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
#: The full (gen2) collection runs on this timer instead of in the middle of a join burst...
FULL_GC_INTERVAL_S = 300.0
#: ...or sooner, once this many sockets closed since the last one, and at least as many as are
#: open (so its cost, which grows with the open ones, is spread over the closed ones): a closed
#: connection's objects are cycles that only a full collection frees, and a flood of joins would
#: otherwise hold them (~20 KiB a socket) for up to FULL_GC_INTERVAL_S.
GC_AFTER_CLOSED_SOCKETS = 1_000
GC_CHECK_INTERVAL_S = 5.0


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


def _libc_malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim (None where the C library has none: musl, macOS)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim: Callable[[int], int] | None = getattr(ctypes.CDLL(name), "malloc_trim", None)
    except OSError:
        return None
    return trim


_MALLOC_TRIM = _libc_malloc_trim()


def return_free_memory() -> None:
    """Give the C heap's free pages back to the system (glibc keeps them otherwise).

    After a flood of joins is closed and collected, most of the freed memory stays with the
    process (benchmarks/signaling_load.py --flood 10000: RSS 98 -> 163 MiB). This returns the C
    heap's part, which on the C allocator (`use_c_allocator`) is all of it: RSS came back to
    105 MiB (docs/BENCHMARKS.md, "Memory after a flood")."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


async def _full_gc_loop(state: ServerState) -> None:
    collected_at = time.monotonic()
    closed_before = state.closed_connections
    while True:
        await asyncio.sleep(GC_CHECK_INTERVAL_S)
        closed = state.closed_connections - closed_before
        due_by_closes = closed >= max(GC_AFTER_CLOSED_SOCKETS, len(state.connections))
        if due_by_closes or time.monotonic() - collected_at >= FULL_GC_INTERVAL_S:
            gc.collect()
            return_free_memory()
            collected_at = time.monotonic()
            closed_before = state.closed_connections


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
    collector = loop.create_task(_full_gc_loop(server.app[STATE]))
    try:
        await stop.wait()
    finally:
        collector.cancel()
        await server.close()
        print("signaling server stopped", file=sys.stderr, flush=True)


#: The allocator the standalone server runs on unless PYTHONMALLOC says otherwise.
SERVER_ALLOCATOR = "malloc"


def use_c_allocator() -> None:
    """Run this process again on the C allocator (PYTHONMALLOC=malloc), unless one was chosen.

    After a flood of joins CPython's own allocator keeps the arenas the flood left partly used
    (benchmarks/signaling_load.py --flood 10000: RSS 98 -> 158 MiB, never back); on glibc
    malloc, trimmed after each full collection, RSS came back to 105 MiB. It costs ~8% more
    server CPU and ~1 KiB more per peer, and no join latency that could be told apart (10,000
    peers: join p99 23 against 18 ms). PYTHONMALLOC=pymalloc keeps CPython's allocator.
    """
    if "PYTHONMALLOC" in os.environ:
        return
    env = {**os.environ, "PYTHONMALLOC": SERVER_ALLOCATOR}
    try:
        os.execve(sys.executable, sys.orig_argv, env)  # the same process id, a new interpreter
    except OSError as error:
        log.warning("staying on CPython's allocator: cannot re-run on malloc (%s)", error)


def run(config: ServerConfig) -> int:
    use_c_allocator()
    raise_fd_limit()
    tune_gc()
    asyncio.run(serve_forever(config))
    return 0
