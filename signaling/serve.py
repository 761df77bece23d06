"""Run the server in the foreground until SIGINT/SIGTERM (shared by `streamer serve` and
`python -m signaling`)."""

from __future__ import annotations

import asyncio
import contextlib
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
    try:
        await stop.wait()
    finally:
        await server.close()
        print("signaling server stopped", file=sys.stderr, flush=True)


def run(config: ServerConfig) -> int:
    raise_fd_limit()
    asyncio.run(serve_forever(config))
    return 0
