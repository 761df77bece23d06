"""Load test of the signaling server on loopback: N WebSocket peers join one channel at a fixed
arrival rate, stay connected, then each sends an offer to a candidate from its welcome and gets an
answer back.

Reports joins/s, join latency (TCP connect + WebSocket upgrade + join -> welcome) p50/p99, the
offer's one-way delivery (sender's client -> target's client) and the signal round trip p50/p99,
and the servers' RSS per connected peer (from /proc). Servers run as separate processes
(`streamer serve`), the load client in this one. Bounded: at most --peers connections and
--timeout seconds per phase.

With `--redis URL` (or `--redis local`: a private redis-server on a free port, no persistence)
the same load runs a second time against `--processes N` `streamer serve --redis` processes,
peers spread over them in turn, each offer sent to a candidate on another process (cross-process
delivery), and both runs are printed side by side.

    .venv/bin/python benchmarks/signaling_load.py --peers 5000 --rate 500
    .venv/bin/python benchmarks/signaling_load.py --peers 5000 --redis local --processes 3

The load client runs with its garbage collector off (one full collection between the phases):
with 10,000 connections its own full collections stalled it for up to ~0.5 s, after which it
sent the joins that had come due in one burst, and that burst, not the server, made the join
p99 (10,000 peers on Redis: 144-360 ms with the collector on, 26 ms without; 2026-12-06).
`--client-gc` keeps it on. The servers' collector is untouched.

`--flood N` measures abuse instead: N viewer joins to random channel names from this one address
(loopback: the per-address caps do not apply, the worst case), each held until the flood ends;
then whether a broadcaster still starts, the channels left (/healthz), the server's RSS before,
at the peak and after, and the continuity of `--flood-viewers` real viewers (aiortc) of a live
broadcast on the same server over all the floods.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
from live_source import start_live_source, start_playing, window_continuity

from signaling.serve import GC_CHECK_INTERVAL_S
from streamer.node.driver import NodeConfig, SwarmNode

ROOT = Path(__file__).resolve().parent.parent
CHANNEL = "load"


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


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (from /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def histogram_quantile(texts: list[str], name: str, fraction: float) -> float | None:
    """The upper bound (ms) of the bucket holding `fraction` of a Prometheus histogram, summed
    over servers' /metrics texts (None if empty): the servers' own view, without the client."""
    buckets: dict[float, float] = {}
    for text in texts:
        for line in text.splitlines():
            if line.startswith(name + "_bucket{"):
                bound = line.split('le="', 1)[1].split('"', 1)[0]
                upper = float("inf") if bound == "+Inf" else float(bound)
                buckets[upper] = buckets.get(upper, 0.0) + float(line.rsplit(" ", 1)[1])
    total = buckets.get(float("inf"), 0.0)
    if not total:
        return None
    for upper in sorted(buckets):
        if buckets[upper] >= fraction * total:
            return upper * 1000
    return None


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


class Peer:
    def __init__(self, index: int, server: int) -> None:
        self.index = index
        #: Which server process it joined.
        self.server = server
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.peer_id = ""
        self.candidates: list[str] = []
        self.join_latency_s = 0.0
        self.answered = asyncio.Event()
        self.offer_sent_at = 0.0
        self.signal_rtt_s: float | None = None
        #: Offers this peer received: how long each took from its sender's client.
        self.offer_delays_s: list[float] = []
        self.errors: list[str] = []

    async def run(self, session: aiohttp.ClientSession, url: str, start_at: float) -> None:
        await asyncio.sleep(max(0.0, start_at - time.perf_counter()))
        began = time.perf_counter()
        self.ws = await session.ws_connect(url + "/ws", autoping=True, heartbeat=None)
        await self.ws.send_str(
            json.dumps({"type": "join", "v": 1, "channel": CHANNEL, "role": "viewer"})
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
            if message["type"] == "error":
                self.errors.append(message["code"])
            if message["type"] != "signal":
                continue
            data = message["data"]
            if data["kind"] == "offer":
                self.offer_delays_s.append(time.perf_counter() - data["sent_at"])
                await self.ws.send_str(
                    json.dumps(
                        {
                            "type": "signal",
                            "to": message["from"],
                            "data": {"kind": "answer", "sdp": "a" * 600},
                        }
                    )
                )
            elif data["kind"] == "answer":
                self.signal_rtt_s = time.perf_counter() - self.offer_sent_at
                self.answered.set()

    async def offer(self, target: str | None) -> None:
        assert self.ws is not None
        if target is None:
            self.answered.set()
            return
        self.offer_sent_at = time.perf_counter()
        await self.ws.send_str(
            json.dumps(
                {
                    "type": "signal",
                    "to": target,
                    # The load client's own clock: every peer lives in this process.
                    "data": {"kind": "offer", "sdp": "o" * 1200, "sent_at": self.offer_sent_at},
                }
            )
        )


def offer_target(peer: Peer, server_of: dict[str, int], cross_process: bool) -> str | None:
    """The first candidate, or with several servers the first on another server than `peer`."""
    for candidate in peer.candidates:
        if not cross_process or server_of.get(candidate) != peer.server:
            return candidate
    return None


@contextlib.contextmanager
def local_redis() -> Iterator[str]:
    """A private redis-server on a free loopback port, no persistence, in a temporary folder."""
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("--redis local needs redis-server (Debian redis-server; `make redis`)")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with tempfile.TemporaryDirectory() as folder:
        proc = subprocess.Popen(
            [
                *(binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", folder),
                *("--save", "", "--appendonly", "no", "--logfile", str(Path(folder) / "log")),
            ],
            stdout=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 10
            while True:
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)):
                    break
                if time.monotonic() > deadline:
                    sys.exit("redis-server did not start")
                time.sleep(0.05)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def start_servers(count: int, redis_url: str | None, *options: str) -> list[subprocess.Popen[str]]:
    """count `streamer serve` processes on free ports (on redis_url, if given), with options."""
    command = [sys.executable, "-m", "streamer", "serve", "--port", "0", *options]
    if redis_url is not None:
        command += ["--redis", redis_url]
    return [
        subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        for _ in range(count)
    ]


def load_options(max_peers: int) -> list[str]:
    """Heartbeats out of the way of a load run; room for every peer in one channel."""
    return ["--heartbeat", "60", "--max-peers-per-channel", str(max_peers)]


async def run_once(
    args: argparse.Namespace, label: str, redis_url: str | None, processes: int
) -> dict[str, Any]:
    servers = start_servers(processes, redis_url, *load_options(args.peers + 10))
    try:
        urls = []
        for server in servers:
            assert server.stdout is not None
            urls.append(server.stdout.readline().split()[-1])
        rss_idle = sum(rss_bytes(server.pid) for server in servers)
        cpu_idle_s = sum(cpu_seconds(server.pid) for server in servers)
        client_cpu_s = time.process_time()
        connector = aiohttp.TCPConnector(limit=0, force_close=False)
        async with aiohttp.ClientSession(connector=connector) as session:
            peers = [Peer(i, i % processes) for i in range(args.peers)]
            t0 = time.perf_counter() + 0.2
            joins = [
                asyncio.create_task(p.run(session, urls[p.server], t0 + i / args.rate))
                for i, p in enumerate(peers)
            ]
            await asyncio.wait_for(asyncio.gather(*joins), args.timeout)
            join_wall_s = time.perf_counter() - t0
            await asyncio.sleep(1.5)  # settle (and a cluster beat) before reading memory
            if not args.client_gc:
                gc.collect()  # between the phases, where its pause is not measured
            rss_joined = sum(rss_bytes(server.pid) for server in servers)
            server_of = {p.peer_id: p.server for p in peers}
            readers = [asyncio.create_task(p.read()) for p in peers]
            signal_t0 = time.perf_counter()
            for i, peer in enumerate(peers):  # offers at the same arrival rate
                await asyncio.sleep(max(0.0, signal_t0 + i / args.rate - time.perf_counter()))
                await peer.offer(offer_target(peer, server_of, processes > 1))
            try:
                await asyncio.wait_for(
                    asyncio.gather(*(p.answered.wait() for p in peers)), args.timeout
                )
            except TimeoutError:
                unanswered = [p for p in peers if not p.answered.is_set()]
                errors = [e for p in peers for e in p.errors]
                sys.exit(f"{label}: {len(unanswered)} offers unanswered; errors {errors[:20]}")
            signal_wall_s = time.perf_counter() - signal_t0
            servers_cpu_s = sum(cpu_seconds(server.pid) for server in servers) - cpu_idle_s
            metrics = [await (await session.get(url + "/metrics")).text() for url in urls]
            client_cpu_s = time.process_time() - client_cpu_s
            await asyncio.gather(*(p.ws.close() for p in peers if p.ws is not None))
            for reader in readers:
                reader.cancel()
        latencies_ms = [p.join_latency_s * 1000 for p in peers]
        rtts_ms = [p.signal_rtt_s * 1000 for p in peers if p.signal_rtt_s is not None]
        delivery_ms = [d * 1000 for p in peers for d in p.offer_delays_s]
        return {
            "run": label,
            "processes": processes,
            "peers": args.peers,
            "arrival_rate_per_s": args.rate,
            "joins_per_s": round(args.peers / join_wall_s, 1),
            "join_ms_p50": round(statistics.median(latencies_ms), 2),
            "join_ms_p99": round(percentile(latencies_ms, 0.99), 2),
            "join_ms_max": round(max(latencies_ms), 2),
            "offer_delivery_ms_p50": round(statistics.median(delivery_ms), 2),
            "offer_delivery_ms_p99": round(percentile(delivery_ms, 0.99), 2),
            "signal_rtt_ms_p50": round(statistics.median(rtts_ms), 2),
            "signal_rtt_ms_p99": round(percentile(rtts_ms, 0.99), 2),
            "signals_round_trips": len(rtts_ms),
            # The servers' histograms: join received -> welcome queued; signal received ->
            # queued for its target (on the target's server). Bucket bounds, in ms.
            "server_join_ms_p99_bucket": histogram_quantile(
                metrics, "signaling_join_seconds", 0.99
            ),
            "server_signal_ms_p99_bucket": histogram_quantile(
                metrics, "signaling_signal_delivery_seconds", 0.99
            ),
            "signal_phase_s": round(signal_wall_s, 2),
            "server_rss_idle_mib": round(rss_idle / 2**20, 1),
            "server_rss_joined_mib": round(rss_joined / 2**20, 1),
            "server_kib_per_peer": round((rss_joined - rss_idle) / args.peers / 1024, 1),
            # Both phases, all server processes together (Redis not included), and the client.
            "servers_cpu_s": round(servers_cpu_s, 1),
            "client_cpu_s": round(client_cpu_s, 1),
        }
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            server.wait(timeout=20)


async def flood_round(
    session: aiohttp.ClientSession, url: str, args: argparse.Namespace, round_no: int
) -> dict[str, Any]:
    """One flood: every join held until all are answered, then a broadcaster, then all closed."""
    held: list[aiohttp.ClientWebSocketResponse] = []
    codes: dict[str, int] = {}

    async def join_once(index: int, start_at: float) -> None:
        await asyncio.sleep(max(0.0, start_at - time.perf_counter()))
        ws = await session.ws_connect(url + "/ws", heartbeat=None)
        channel = f"flood{round_no}x{index}x{os.urandom(4).hex()}"
        await ws.send_str(json.dumps({"type": "join", "channel": channel, "role": "viewer"}))
        reply = json.loads((await ws.receive(timeout=30)).data)
        code = reply.get("code", reply["type"])
        codes[code] = codes.get(code, 0) + 1
        held.append(ws)

    t0 = time.perf_counter() + 0.2
    await asyncio.wait_for(
        asyncio.gather(*(join_once(i, t0 + i / args.rate) for i in range(args.flood))),
        args.timeout,
    )
    flood_s = time.perf_counter() - t0
    during = await (await session.get(url + "/healthz")).json()
    source = await session.ws_connect(url + "/ws")
    claim = {"type": "join", "channel": "real", "role": "broadcaster", "secret": "s"}
    await source.send_str(json.dumps(claim))
    started = json.loads((await source.receive(timeout=30)).data)["type"] == "welcome"
    await asyncio.gather(*(ws.close() for ws in held))
    await source.close()
    return {
        "flood_s": round(flood_s, 1),
        "replies": codes,
        "broadcaster_started": started,
        "channels_during": during["channels"],
    }


@contextlib.asynccontextmanager
async def bystanders(url: str, count: int) -> AsyncIterator[list[Any]]:
    """A live broadcast in its own channel with `count` real viewers (aiortc) in this process,
    all playing before it yields; their continuity over the floods is what the flood cost them.
    """
    if count == 0:
        yield []
        return
    source = await start_live_source(url, "bystanders", 0.5, 13)
    viewers = [SwarmNode(NodeConfig(url, "bystanders", "viewer", seed=i)) for i in range(count)]
    try:
        await start_playing(viewers)
        yield viewers
    finally:
        for viewer in viewers:
            await viewer.close()
        await source.close()


async def flood(args: argparse.Namespace) -> dict[str, Any]:
    """`--flood-rounds` floods in a row on one server: RSS after each shows whether it grows."""
    (server,) = start_servers(1, None, *load_options(100))
    try:
        assert server.stdout is not None
        url = server.stdout.readline().split()[-1]
        result: dict[str, Any] = {"flood_joins": args.flood, "arrival_rate_per_s": args.rate}
        async with (
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session,
            bystanders(url, args.flood_viewers) as watching,
        ):
            result["channels_before"] = (await (await session.get(url + "/healthz")).json())[
                "channels"
            ]
            result["server_rss_before_mib"] = round(rss_bytes(server.pid) / 2**20, 1)
            before = [viewer.stats() for viewer in watching]
            for round_no in range(1, args.flood_rounds + 1):
                figures = await flood_round(session, url, args, round_no)
                # Every close noticed, then a GC check (serve.py) that sees them all.
                await asyncio.sleep(2 * GC_CHECK_INTERVAL_S + 1.0)
                health = await (await session.get(url + "/healthz")).json()
                figures["channels_after"] = health["channels"]
                figures["server_rss_after_mib"] = round(rss_bytes(server.pid) / 2**20, 1)
                for key, value in figures.items():
                    result[f"{round_no}_{key}"] = value
            result["bystanders_continuity"] = [
                window_continuity(b, viewer.stats())
                for b, viewer in zip(before, watching, strict=True)
            ]
        return result
    finally:
        server.terminate()
        server.wait(timeout=20)


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    raise_fd_limit(max(args.peers, args.flood) + 256)
    if args.flood:
        return [await flood(args)]
    if not args.client_gc:
        gc.disable()  # the client's pauses would be counted as the server's (module docstring)
    results = [await run_once(args, "in-memory", None, 1)]
    if args.redis is not None:
        with contextlib.ExitStack() as stack:
            url = stack.enter_context(local_redis()) if args.redis == "local" else args.redis
            results.append(await run_once(args, "redis", url, args.processes))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--peers", type=int, default=5000)
    parser.add_argument("--rate", type=float, default=500.0, help="joins (and offers) per second")
    parser.add_argument("--timeout", type=float, default=120.0, help="bound on each phase, s")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument(
        "--redis",
        default=None,
        metavar="URL",
        help="also run a cluster on this Redis (`local`: start a private redis-server)",
    )
    parser.add_argument(
        "--processes", type=int, default=3, help="serve processes of the cluster run"
    )
    parser.add_argument(
        "--flood", type=int, default=0, metavar="N", help="measure a flood of N joins instead"
    )
    parser.add_argument("--flood-rounds", type=int, default=2, help="floods in a row")
    parser.add_argument(
        "--flood-viewers",
        type=int,
        default=3,
        help="real viewers of a live broadcast on the server during the floods (bystanders)",
    )
    parser.add_argument(
        "--client-gc",
        action="store_true",
        help="keep the load client's garbage collector on (its pauses then count as latency)",
    )
    args = parser.parse_args()
    if not 1 <= args.peers <= 20_000:
        sys.exit("--peers must be 1..20000")
    if not 1 <= args.processes <= 16:
        sys.exit("--processes must be 1..16")
    if not 0 <= args.flood <= 20_000:
        sys.exit("--flood must be 0..20000")
    results = asyncio.run(run(args))
    for key in results[0]:
        print(f"{key:>24}: " + "  ".join(f"{r[key]!s:>12}" for r in results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
