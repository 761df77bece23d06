"""The delay/loss shim: holds each forwarded packet in the router namespace until its release time.

For kernels without sch_netem. The router's FORWARD hook queues every packet to NFQUEUE (see
namespaces.router_queue_ruleset); this process reads them, asks timing.ReleaseClock when each may
go (or whether it is lost) from the sites its source and destination addresses belong to, and
gives the verdicts at those instants. Run inside the router namespace:

    ip netns exec PREFIX-router python -m streamer.netbed.shim CONFIG.json

CONFIG: {"queue": 0, "seed": 1, "links": {site: {"delay_s", "jitter_s", "loss"}},
"addresses": {ip: site}}. It prints "ready" once bound and a summary line when stopped (SIGTERM).
Needs PyPI NetfilterQueue (the `netbed` extra; Debian libnetfilter-queue-dev to build it).
"""

from __future__ import annotations

import heapq
import itertools
import json
import random
import select
import shutil
import signal
import socket
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from streamer.errors import UserError
from streamer.netbed.timing import LinkProfile, ReleaseClock

QUEUE_MAX_PACKETS = 16384
"""Packets the kernel may hold for us: ~0.2 s of delay at the bed's ~50k packets/s is far less."""
IDLE_WAKE_S = 0.5


def check_shim_available() -> None:
    """A one-line error when the shim cannot run here."""
    try:
        import netfilterqueue  # noqa: F401
    except ImportError:
        raise UserError(
            "no sch_netem in this kernel, and the delay shim needs NetfilterQueue "
            "(apt-get install libnetfilter-queue-dev; pip install '.[netbed]'; make test does both)"
        ) from None
    if shutil.which("iptables") is None:
        raise UserError("the delay shim needs iptables (Debian: apt-get install iptables)")


def ipv4_addresses(packet: bytes) -> tuple[str, str] | None:
    """(source, destination) of an IPv4 packet; None for anything else or a truncated header."""
    if len(packet) < 20 or packet[0] >> 4 != 4:
        return None
    return socket.inet_ntoa(packet[12:16]), socket.inet_ntoa(packet[16:20])


def load_config(path: Path) -> tuple[int, ReleaseClock, dict[str, str]]:
    data: dict[str, Any] = json.loads(path.read_text())
    links = {name: LinkProfile(**link) for name, link in data["links"].items()}
    clock = ReleaseClock(links, random.Random(int(data.get("seed", 1))))
    return int(data.get("queue", 0)), clock, dict(data["addresses"])


def config_json(
    queue: int, seed: int, links: dict[str, LinkProfile], addresses: dict[str, str]
) -> str:
    body = {
        "queue": queue,
        "seed": seed,
        "links": {
            name: {"delay_s": p.delay_s, "jitter_s": p.jitter_s, "loss": p.loss}
            for name, p in links.items()
        },
        "addresses": addresses,
    }
    return json.dumps(body, indent=1)


def serve(queue: int, clock: ReleaseClock, addresses: dict[str, str]) -> int:
    from netfilterqueue import NetfilterQueue  # optional dependency: only the shim needs it

    held: list[tuple[float, int, Any]] = []
    order = itertools.count()
    stopping = False

    def on_packet(packet: Any) -> None:
        now_s = time.monotonic()
        pair = ipv4_addresses(packet.get_payload())
        src, dst = (addresses.get(pair[0]), addresses.get(pair[1])) if pair else (None, None)
        release_s = clock.release_s(src, dst, now_s)
        if release_s is None:
            packet.drop()
        elif release_s <= now_s:
            packet.accept()
        else:
            heapq.heappush(held, (release_s, next(order), packet))

    def on_stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    nfq = NetfilterQueue()
    nfq.bind(queue, on_packet, max_len=QUEUE_MAX_PACKETS)
    sock = socket.fromfd(nfq.get_fd(), socket.AF_NETLINK, socket.SOCK_RAW)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    print("ready", flush=True)
    try:
        while not stopping:
            now_s = time.monotonic()
            while held and held[0][0] <= now_s:
                heapq.heappop(held)[2].accept()
            wait_s = held[0][0] - now_s if held else IDLE_WAKE_S
            try:
                readable, _, _ = select.select([sock], [], [], max(0.0, wait_s))
            except InterruptedError:
                continue
            if readable:
                nfq.run(block=False)
    finally:
        while held:
            heapq.heappop(held)[2].accept()
        nfq.unbind()
        sock.close()
        print(
            f"shim: {clock.packets} packets, {clock.dropped} dropped", file=sys.stderr, flush=True
        )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m streamer.netbed.shim CONFIG.json", file=sys.stderr)
        return 2
    queue, clock, addresses = load_config(Path(args[0]))
    return serve(queue, clock, addresses)


if __name__ == "__main__":
    sys.exit(main())
