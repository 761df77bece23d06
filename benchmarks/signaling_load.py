"""Load test of the signaling server on loopback: N WebSocket peers join one channel at a fixed
arrival rate, stay connected, then each sends an offer to a candidate from its welcome and gets an
answer back.

Reports joins/s, join latency (TCP connect + WebSocket upgrade + join -> welcome) p50/p99, signal
round trip p50/p99 and the server's RSS per connected peer (from /proc). The server runs as a
separate process (`python -m signaling`), so client and server each get a core. Bounded: at most
--peers connections and --timeout seconds.

    .venv/bin/python benchmarks/signaling_load.py --peers 5000 --rate 500
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent


def raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < needed:
        sys.exit(f"open-files hard limit {hard} < {needed}: raise it (ulimit -Hn)")


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


class Peer:
    def __init__(self, index: int) -> None:
        self.index = index
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.peer_id = ""
        self.candidates: list[str] = []
        self.join_latency_s = 0.0
        self.answered = asyncio.Event()
        self.offer_sent_at = 0.0
        self.signal_rtt_s: float | None = None

    async def run(self, session: aiohttp.ClientSession, url: str, start_at: float) -> None:
        await asyncio.sleep(max(0.0, start_at - time.perf_counter()))
        began = time.perf_counter()
        self.ws = await session.ws_connect(url + "/ws", autoping=True, heartbeat=None)
        await self.ws.send_str(
            json.dumps({"type": "join", "v": 1, "channel": "load", "role": "viewer"})
        )
        welcome = json.loads((await self.ws.receive(timeout=30)).data)
        self.join_latency_s = time.perf_counter() - began
        assert welcome["type"] == "welcome", welcome
        self.peer_id = welcome["peer_id"]
        self.candidates = [p["peer_id"] for p in welcome["peers"]]

    async def read(self) -> None:
        assert self.ws is not None
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            message = json.loads(msg.data)
            if message["type"] != "signal":
                continue
            if message["data"]["kind"] == "offer":
                await self.ws.send_str(
                    json.dumps(
                        {
                            "type": "signal",
                            "to": message["from"],
                            "data": {"kind": "answer", "sdp": "a" * 600},
                        }
                    )
                )
            elif message["data"]["kind"] == "answer":
                self.signal_rtt_s = time.perf_counter() - self.offer_sent_at
                self.answered.set()

    async def offer(self) -> None:
        assert self.ws is not None
        if not self.candidates:
            self.answered.set()
            return
        self.offer_sent_at = time.perf_counter()
        await self.ws.send_str(
            json.dumps(
                {
                    "type": "signal",
                    "to": self.candidates[0],
                    "data": {"kind": "offer", "sdp": "o" * 1200},
                }
            )
        )


async def run(args: argparse.Namespace) -> dict[str, object]:
    raise_fd_limit(args.peers + 256)
    if args.client_gc_off:
        import gc

        gc.disable()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "signaling",
            "--port",
            "0",
            "--heartbeat",
            "60",
            "--max-peers-per-channel",
            str(args.peers + 10),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert server.stdout is not None
        url = server.stdout.readline().split()[-1]
        rss_idle = rss_bytes(server.pid)
        connector = aiohttp.TCPConnector(limit=0, force_close=False)
        async with aiohttp.ClientSession(connector=connector) as session:
            peers = [Peer(i) for i in range(args.peers)]
            t0 = time.perf_counter() + 0.2
            joins = [
                asyncio.create_task(p.run(session, url, t0 + i / args.rate))
                for i, p in enumerate(peers)
            ]
            await asyncio.wait_for(asyncio.gather(*joins), args.timeout)
            join_wall_s = time.perf_counter() - t0
            await asyncio.sleep(1.0)  # let the server settle before reading its memory
            rss_joined = rss_bytes(server.pid)
            readers = [asyncio.create_task(p.read()) for p in peers]
            signal_t0 = time.perf_counter()
            for i, peer in enumerate(peers):  # offers at the same arrival rate
                await asyncio.sleep(max(0.0, signal_t0 + i / args.rate - time.perf_counter()))
                await peer.offer()
            await asyncio.wait_for(
                asyncio.gather(*(p.answered.wait() for p in peers)), args.timeout
            )
            signal_wall_s = time.perf_counter() - signal_t0
            for peer in peers:
                assert peer.ws is not None
                await peer.ws.close()
            for reader in readers:
                reader.cancel()
        latencies_ms = [p.join_latency_s * 1000 for p in peers]
        rtts_ms = [p.signal_rtt_s * 1000 for p in peers if p.signal_rtt_s is not None]
        return {
            "peers": args.peers,
            "arrival_rate_per_s": args.rate,
            "joins_per_s": round(args.peers / join_wall_s, 1),
            "join_ms_p50": round(statistics.median(latencies_ms), 2),
            "join_ms_p99": round(percentile(latencies_ms, 0.99), 2),
            "join_ms_max": round(max(latencies_ms), 2),
            "signal_rtt_ms_p50": round(statistics.median(rtts_ms), 2),
            "signal_rtt_ms_p99": round(percentile(rtts_ms, 0.99), 2),
            "signals_round_trips": len(rtts_ms),
            "signal_phase_s": round(signal_wall_s, 2),
            "server_rss_idle_mib": round(rss_idle / 2**20, 1),
            "server_rss_joined_mib": round(rss_joined / 2**20, 1),
            "server_kib_per_peer": round((rss_joined - rss_idle) / args.peers / 1024, 1),
        }
    finally:
        server.terminate()
        server.wait(timeout=20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--peers", type=int, default=5000)
    parser.add_argument("--rate", type=float, default=500.0, help="joins (and offers) per second")
    parser.add_argument("--timeout", type=float, default=120.0, help="bound on each phase, s")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument(
        "--client-gc-off", action="store_true", help="no GC pauses in the load client"
    )
    args = parser.parse_args()
    if not 1 <= args.peers <= 20_000:
        sys.exit("--peers must be 1..20000")
    result = asyncio.run(run(args))
    for key, value in result.items():
        print(f"{key:>24}: {value}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
