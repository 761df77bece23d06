"""Failover of a signaling cluster on loopback: kill -9 one `streamer serve --redis` process
under a live swarm and measure how fast its peers are back on the others and what the viewers saw.

Starts a private redis-server and `--processes` cluster processes, then in this process a
broadcaster (a live test pattern), `--viewers` real viewers (aiortc, SwarmNode) and `--clients`
signaling-only peers (in this process, or with `--client-processes K` in K processes of their own
so that their wave of reconnects does not share the viewers' event loop), every one of them given
all the servers (each tries them in its own shuffled order). Once every viewer plays, the process
holding the most peers is killed with SIGKILL. Reported: for the peers that were on it, the time
from the kill to their welcome on another process (p50/p99/max) and whether their ids were kept;
the CPU seconds the surviving servers, the clients and the whole machine used in that wave;
over the viewers, continuity and chunks missed in the `--after` seconds after the kill, and links
to ids no node has (a second link to a peer that came back under a new id, the old bug) at the
end.

    .venv/bin/python benchmarks/failover.py --processes 3 --viewers 10 --clients 40
    .venv/bin/python benchmarks/failover.py --viewers 10 --clients 6000 --client-processes 1
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from failover_clients import watch_reconnect
from live_source import start_live_source
from signaling_load import local_redis
from signaling_load import start_servers as start_cluster

from streamer.node.driver import NodeConfig, SwarmNode
from streamer.swarm import ChunkPlayed
from streamer.transport.signaling_client import (
    SignalingClient,
    websocket_url,
)

ROOT = Path(__file__).resolve().parent.parent
CHANNEL = "failover"
CHUNK_S = 0.5
EPOCH = 7
CPU_SAMPLE_S = 0.25


def start_servers(count: int, redis_url: str, grace_s: float) -> tuple[list[Any], list[str]]:
    procs = start_cluster(count, redis_url, "--peer-grace", str(grace_s))
    urls = []
    for proc in procs:
        assert proc.stdout is not None
        urls.append(proc.stdout.readline().split()[-1])
    return procs, urls


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a live process has used; 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_s() -> float:
    """CPU seconds the whole machine spent busy (all cores), from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK")


class CpuSamples:
    """Cumulative CPU of the surviving servers, the clients (client processes and this one) and
    the machine, sampled through the wave: how much of the rejoin time was whose work."""

    def __init__(self, servers: list[int], clients: list[int]) -> None:
        self.servers, self.clients = servers, clients
        self.samples: list[tuple[float, float, float, float]] = []

    def sample(self) -> None:
        self.samples.append(
            (
                time.monotonic(),
                sum(cpu_s(pid) for pid in self.servers),
                sum(cpu_s(pid) for pid in self.clients),
                machine_busy_s(),
            )
        )

    def between(self, start: float, end: float) -> dict[str, float]:
        """CPU seconds used from the first sample at or after start to the first at or after
        end (the last sample if none is that late)."""
        first = next(s for s in self.samples if s[0] >= start)
        last = next((s for s in self.samples if s[0] >= end), self.samples[-1])
        return {
            "wall_s": round(last[0] - first[0], 2),
            "servers_cpu_s": round(last[1] - first[1], 2),
            "clients_cpu_s": round(last[2] - first[2], 2),
            "machine_busy_cpu_s": round(last[3] - first[3], 2),
        }


def quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Viewer(SwarmNode):
    def __init__(self, config: NodeConfig) -> None:
        super().__init__(config)
        self.played_at: list[tuple[float, ChunkPlayed]] = []
        self.on_chunk_played = lambda e: self.played_at.append((time.monotonic(), e))


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with local_redis() as redis_url:
        procs, urls = start_servers(args.processes, redis_url, args.grace)
        try:
            return await measure(args, procs, urls)
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.terminate()
                with contextlib.suppress(Exception):
                    proc.wait(timeout=10)


async def measure(args: argparse.Namespace, procs: list[Any], urls: list[str]) -> dict[str, Any]:
    source = await start_live_source(
        urls[0], CHANNEL, CHUNK_S, EPOCH, fallback_server_urls=tuple(urls[1:])
    )
    viewers = [
        Viewer(
            NodeConfig(
                urls[i % len(urls)],
                CHANNEL,
                "viewer",
                fallback_server_urls=tuple(u for u in urls if u != urls[i % len(urls)]),
                seed=i,
            )
        )
        for i in range(args.viewers)
    ]
    in_process = 0 if args.client_processes else args.clients
    clients = [SignalingClient(urls, channel=CHANNEL, role="viewer") for _ in range(in_process)]
    helpers: list[asyncio.subprocess.Process] = []
    back_at: dict[int, float] = {}
    try:
        for viewer in viewers:
            await viewer.start()
        for client in clients:
            await client.connect()
        helpers = await start_client_processes(args, urls)
        helper_counts = [json.loads(await readline(h))["on"] for h in helpers]
        watchers = [asyncio.create_task(watch_reconnect(c, back_at)) for c in clients]
        deadline = time.monotonic() + 60
        while not all(len(v.played_at) >= 4 for v in viewers):
            if time.monotonic() > deadline:
                raise SystemExit("the viewers did not start playing within 60 s")
            await asyncio.sleep(0.1)
        await asyncio.sleep(args.settle)
        everyone = [source.node.client, *(v.client for v in viewers), *clients]
        on_server = {u: [c for c in everyone if c.url == websocket_url(u)] for u in urls}
        counts = {
            u: len(on_server[u]) + sum(c.get(websocket_url(u), 0) for c in helper_counts)
            for u in urls
        }
        doomed_url = max(urls, key=lambda u: counts[u])
        doomed = on_server[doomed_url]
        ids_before = {id(c): c.peer_id for c in doomed}
        node_clients = {id(v.client): v for v in viewers} | {id(source.node.client): source.node}
        reconnects_before = {id(c): c.reconnects for c in doomed}
        doomed_proc = procs[urls.index(doomed_url)]
        cpu = CpuSamples(
            [p.pid for p in procs if p is not doomed_proc], [os.getpid(), *(h.pid for h in helpers)]
        )
        cpu.sample()
        doomed_proc.kill()
        killed_at = time.monotonic()
        order = json.dumps({"killed": websocket_url(doomed_url), "at": killed_at}) + "\n"
        for helper in helpers:
            assert helper.stdin is not None
            helper.stdin.write(order.encode())
            await helper.stdin.drain()
        next_sample = killed_at
        while time.monotonic() - killed_at < args.after:
            for c in doomed:
                if id(c) in node_clients and c.reconnects > reconnects_before[id(c)]:
                    back_at.setdefault(id(c), time.monotonic())
            if time.monotonic() >= next_sample:
                cpu.sample()
                next_sample += CPU_SAMPLE_S
            await asyncio.sleep(0.01)
        back_s = [back_at[id(c)] - killed_at for c in doomed if id(c) in back_at]
        kept = sum(c.peer_id == ids_before[id(c)] for c in doomed if id(c) in back_at)
        doomed_count = len(doomed)
        for helper in helpers:
            result = json.loads(await readline(helper, args.after + 30))
            back_s += result["back_s"]
            kept += result["kept"]
            doomed_count += result["doomed"]
        live_ids = {c.peer_id for c in everyone}
        stale_links = 0
        links = 0
        for node in [source.node, *viewers]:
            assert node.manager is not None
            open_ids = node.manager.open_peers()
            links += len(open_ids)
            stale_links += sum(pid not in live_ids for pid in open_ids)
        window = [(e.seq, t) for v in viewers for t, e in v.played_at if t >= killed_at]
        stats = [v.stats() for v in viewers]
        for watcher in watchers:
            watcher.cancel()
        return {
            "processes": args.processes,
            "viewers": args.viewers,
            "clients": args.clients,
            "grace_s": args.grace,
            "client_processes": args.client_processes,
            "on_killed_process": doomed_count,
            "back": len(back_s),
            "ids_kept": kept,
            "back_s_p50": quantile(back_s, 0.5),
            "back_s_p99": quantile(back_s, 0.99),
            "back_s_max": max(back_s) if back_s else None,
            # From the kill to the last peer back: whose CPU the wave took (2 cores shared).
            "wave_cpu": cpu.between(killed_at - CPU_SAMPLE_S, killed_at + max(back_s, default=0)),
            "viewers_continuity_min": min(s["continuity"] or 0.0 for s in stats),
            "viewers_chunks_missed": sum(int(s["chunks_missed"]) for s in stats),
            "viewers_chunks_played_after_kill": len(window),
            "viewers_stall_s_total": round(sum(float(s["stall_s"]) for s in stats), 2),
            "links_at_end": links,
            "links_to_unknown_ids": stale_links,
            "back_s": [round(s, 3) for s in sorted(back_s)],
            "mean_back_s": statistics.fmean(back_s) if back_s else None,
        }
    finally:
        for helper in helpers:
            if helper.returncode is None:
                helper.kill()
            await helper.wait()
        for client in clients:
            await client.close()
        for viewer in viewers:
            await viewer.close()
        await source.close()


async def start_client_processes(
    args: argparse.Namespace, urls: list[str]
) -> list[asyncio.subprocess.Process]:
    """`--clients` spread over `--client-processes` processes (benchmarks/failover_clients.py)."""
    helpers = []
    for index in range(args.client_processes):
        count = args.clients // args.client_processes
        count += index < args.clients % args.client_processes
        servers = [part for url in urls for part in ("--server", url)]
        helpers.append(
            await asyncio.create_subprocess_exec(
                *(sys.executable, str(Path(__file__).with_name("failover_clients.py")), *servers),
                *("--channel", CHANNEL, "--count", str(count), "--after", str(args.after)),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )
        )
    return helpers


async def readline(helper: asyncio.subprocess.Process, timeout_s: float = 300.0) -> bytes:
    """The helper's next line; a helper that died or went quiet ends the benchmark."""
    assert helper.stdout is not None
    line = await asyncio.wait_for(helper.stdout.readline(), timeout_s)
    if not line:
        raise SystemExit(f"a client process ended early (exit {await helper.wait()})")
    return line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--viewers", type=int, default=10, help="real (aiortc) viewers")
    parser.add_argument("--clients", type=int, default=40, help="signaling-only peers")
    parser.add_argument(
        "--client-processes",
        type=int,
        default=0,
        help="run the signaling-only peers in this many processes of their own (0: in this one)",
    )
    parser.add_argument("--grace", type=float, default=5.0, help="serve --peer-grace")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds of play before the kill")
    parser.add_argument("--after", type=float, default=15.0, help="seconds measured after it")
    parser.add_argument("--json", help="write the result here too")
    args = parser.parse_args()
    result = asyncio.run(run(args))
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
