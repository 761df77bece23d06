"""Signaling-only peers for benchmarks/failover.py, in a process of their own.

Thousands of clients coming back at once would otherwise share one event loop with the real
viewers whose continuity the benchmark measures. Protocol, one JSON object per line:

- stdout `{"on": {ws_url: count}}` once every client has joined;
- stdin `{"killed": ws_url, "at": T}` (T on time.monotonic(), one clock for every process of a
  Linux machine);
- stdout `{"back_s": [...], "kept": N, "doomed": N}` after `--after` seconds: for the clients
  that were on the killed server, seconds from T to their welcome elsewhere.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import time

from signaling_load import raise_fd_limit

from streamer.transport.signaling_client import Reconnected, SignalingClient


async def watch_reconnect(client: SignalingClient, back_at: dict[int, float]) -> None:
    """Note when `client` is first welcomed again after losing its server (also failover.py's)."""
    async for event in client.events():
        if isinstance(event, Reconnected):
            back_at.setdefault(id(client), time.monotonic())


def say(message: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


async def run(args: argparse.Namespace) -> None:
    gc.disable()  # a load client's own pauses must not count as the servers' (signaling_load.py)
    raise_fd_limit(args.count + 256)
    clients = [
        SignalingClient(args.server, channel=args.channel, role="viewer") for _ in range(args.count)
    ]
    back_at: dict[int, float] = {}
    try:
        for client in clients:
            await client.connect()
        watchers = [asyncio.create_task(watch_reconnect(c, back_at)) for c in clients]
        on: dict[str, int] = {}
        for client in clients:
            on[client.url] = on.get(client.url, 0) + 1
        say({"on": on})
        line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        order = json.loads(line)
        doomed = [c for c in clients if c.url == order["killed"]]
        ids_before = {id(c): c.peer_id for c in doomed}
        await asyncio.sleep(max(0.0, order["at"] + args.after - time.monotonic()))
        back = [c for c in doomed if id(c) in back_at]
        say(
            {
                "back_s": [back_at[id(c)] - order["at"] for c in back],
                "kept": sum(c.peer_id == ids_before[id(c)] for c in back),
                "doomed": len(doomed),
            }
        )
        for watcher in watchers:
            watcher.cancel()
    finally:
        for client in clients:
            await client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", action="append", required=True, help="every server's URL")
    parser.add_argument("--channel", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--after", type=float, required=True, help="seconds measured after it")
    args = parser.parse_args()
    if not 1 <= args.count <= 20_000:
        sys.exit("--count must be 1..20000")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
