"""Peer exchange on loopback: the signaling server is killed, 30% of the viewers leave while it is
down, and the ones that stay must keep their neighbours (found through their neighbours: offers
and answers relayed over the data channels) and play on.

One `python -m signaling` process, then in this process a broadcaster (a live test pattern, 0.5 s
chunks) and `--viewers` real viewers (aiortc, SwarmNode) that want `--target` neighbours (at most
target + 2). Once every viewer plays and `--settle` seconds more, the server gets SIGKILL; after
`--leave-after` seconds the viewers with the most neighbours (`--leave-share` of them) leave; the
server stays dead for `--down` seconds in all. Reported per run, over the viewers that stayed, at
the end of the down time: neighbours (min, mean), links opened through exchange and still open,
and continuity over the down time (chunks on time / chunks due). The same swarm runs twice, with
peer exchange and without (NodeConfig.peer_exchange=False: no hints, no relayed signals).

    .venv/bin/python benchmarks/peer_exchange.py --viewers 12 --down 60
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from live_source import start_live_source, start_playing, window_continuity

from streamer.node.driver import NodeConfig, SwarmNode

ROOT = Path(__file__).resolve().parent.parent
CHANNEL = "exchange"
CHUNK_S = 0.5
EPOCH = 11


def start_server() -> tuple[subprocess.Popen[str], str]:
    server = subprocess.Popen(
        [sys.executable, "-m", "signaling", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert server.stdout is not None
    return server, server.stdout.readline().split()[-1]


async def one_run(args: argparse.Namespace, exchange: bool) -> dict[str, Any]:
    server, url = start_server()
    source = await start_live_source(url, CHANNEL, CHUNK_S, EPOCH, peer_exchange=exchange)
    viewers = [
        SwarmNode(
            NodeConfig(
                url,
                CHANNEL,
                "viewer",
                target_neighbours=args.target,
                max_neighbours=args.target + 2,
                seed=i,
                peer_exchange=exchange,
            )
        )
        for i in range(args.viewers)
    ]
    try:
        await start_playing(viewers)
        await asyncio.sleep(args.settle)
        server.kill()
        killed_at = time.monotonic()
        await asyncio.sleep(args.leave_after)
        by_neighbours = sorted(viewers, key=lambda v: -int(v.stats()["neighbour_count"]))
        leaving = by_neighbours[: round(args.leave_share * len(viewers))]
        stayed = [v for v in viewers if v not in leaving]
        before = {id(v): v.stats() for v in stayed}
        for viewer in leaving:
            await viewer.close()
        await asyncio.sleep(max(0.0, args.down - (time.monotonic() - killed_at)))
        after = {id(v): v.stats() for v in stayed}
        counts = [int(after[id(v)]["neighbour_count"]) for v in stayed]
        continuities = [window_continuity(before[id(v)], after[id(v)]) for v in stayed]
        known = [c for c in continuities if c is not None]
        return {
            "peer_exchange": exchange,
            "viewers": args.viewers,
            "left": len(leaving),
            "stayed": len(stayed),
            "target_neighbours": args.target,
            "down_s": args.down,
            "neighbours_min": min(counts),
            "neighbours_mean": round(sum(counts) / len(counts), 2),
            "stayed_with_3_or_more": sum(c >= 3 for c in counts),
            "neighbours_via_exchange": sum(
                int(after[id(v)]["neighbours_via_exchange"]) for v in stayed
            ),
            "links_opened_via_exchange": sum(
                int(after[id(v)]["links_opened_via_exchange"]) for v in stayed
            ),
            "continuity_min": round(min(known), 4) if known else None,
            "continuity_mean": round(sum(known) / len(known), 4) if known else None,
            "chunks_missed": sum(
                int(after[id(v)]["chunks_missed"]) - int(before[id(v)]["chunks_missed"])
                for v in stayed
            ),
            "per_viewer": [
                {
                    "neighbour_count": after[id(v)]["neighbour_count"],
                    "neighbours_via_exchange": after[id(v)]["neighbours_via_exchange"],
                    "continuity_down": c,
                }
                for v, c in zip(stayed, continuities, strict=True)
            ],
        }
    finally:
        for viewer in viewers:
            await viewer.close()
        await source.close()
        if server.poll() is None:
            server.kill()
        with contextlib.suppress(Exception):
            server.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--viewers", type=int, default=12, help="real (aiortc) viewers")
    parser.add_argument("--target", type=int, default=4, help="neighbours each viewer wants")
    parser.add_argument("--settle", type=float, default=6.0, help="seconds of play before the kill")
    parser.add_argument("--leave-after", type=float, default=5.0, help="kill -> viewers leave")
    parser.add_argument("--leave-share", type=float, default=0.3, help="share of viewers leaving")
    parser.add_argument("--down", type=float, default=60.0, help="seconds the server stays dead")
    parser.add_argument("--only", choices=("exchange", "baseline"), help="one run, not both")
    parser.add_argument("--json", help="write the results here too")
    args = parser.parse_args()
    modes = [True, False] if args.only is None else [args.only == "exchange"]
    results = [asyncio.run(one_run(args, exchange)) for exchange in modes]
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
