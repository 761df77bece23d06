"""`streamer relay`: a headless peer that adds upload capacity to a channel.

It fetches each chunk about once and serves it to as many neighbours as its upload allows; it
survives restarts of the server (the signaling client rejoins) and of the broadcaster (the node
picks up the re-published media and reconnects to the new source).
"""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import replace
from typing import Any

from signaling_wire import CHANNEL_NAME_RE
from streamer.errors import UserError
from streamer.node.driver import NodeConfig, SwarmNode
from streamer.node.runner import run_until_stopped, write_stats
from streamer.node.units import parse_rate_bps
from streamer.swarm.config import relay_config
from streamer.transport.rtc import RtcConfig

NAME = "relay"
HELP = "run a headless relay peer that adds upload capacity to a channel"


def add_node_arguments(parser: argparse.ArgumentParser, max_neighbours: int) -> None:
    """Options relay and watch share."""
    add_server_argument(parser, required=True)
    parser.add_argument("--channel", default="live", help="channel name (default: live)")
    parser.add_argument(
        "--max-neighbours", type=int, default=max_neighbours, help="neighbours at most"
    )
    parser.add_argument("--upload-limit", help="cap on upload, e.g. 5M (bits/s)")
    parser.add_argument("--duration", type=float, help="leave after this many seconds")
    parser.add_argument("--stats-json", help="write stats to this file on exit")
    parser.add_argument("--status-interval", type=float, default=10.0, help="status line period")
    add_hop_trace_argument(parser)
    add_ice_arguments(parser)
    add_exchange_argument(parser)


def add_hop_trace_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--hop-trace",
        metavar="FILE",
        help="write a line for every request and piece sent or received, with the time (for "
        "`streamer netbed --hop-trace`, which splits where a piece's time goes)",
    )


def add_exchange_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-peer-exchange",
        action="store_true",
        help="do not tell neighbours about other peers nor relay their WebRTC signals; find "
        "neighbours through the signaling server only",
    )


def add_server_argument(parser: argparse.ArgumentParser, required: bool, help: str = "") -> None:
    """`--server URL`, repeatable: the servers of one cluster, failed over to in turn."""
    parser.add_argument(
        "--server",
        action="append",
        required=required,
        metavar="URL",
        help=help
        or "signaling server base URL; repeat it for the other servers of a cluster (the peer "
        "fails over to them, keeping its peer id)",
    )


def server_urls(args: argparse.Namespace) -> tuple[str, tuple[str, ...]]:
    """The first `--server` and the others (NodeConfig.server_url, fallback_server_urls)."""
    urls: list[str] = args.server
    return urls[0], tuple(urls[1:])


def add_ice_arguments(parser: argparse.ArgumentParser) -> None:
    """ICE options of every node (the STUN/TURN servers themselves come from the server)."""
    parser.add_argument(
        "--ice-relay-only",
        action="store_true",
        help="connect to neighbours through the server's TURN relays only (testing, privacy)",
    )


def rtc_config(args: argparse.Namespace) -> RtcConfig:
    return RtcConfig(ice_transport_policy="relay" if args.ice_relay_only else "all")


def check_channel_name(name: str) -> None:
    """Refuse a name the server would refuse, before connecting anywhere."""
    if not CHANNEL_NAME_RE.match(name):
        raise UserError(f"bad channel name {name!r}: use 1-64 letters, digits, '_' or '-'")


def node_config(args: argparse.Namespace, role: str, target_neighbours: int) -> NodeConfig:
    check_channel_name(args.channel)
    if args.max_neighbours < 1:
        raise UserError("--max-neighbours must be at least 1")
    if args.duration is not None and args.duration <= 0:
        raise UserError("--duration must be positive")
    try:
        limit_bps = parse_rate_bps(args.upload_limit) if args.upload_limit else None
    except ValueError as error:
        raise UserError(str(error)) from None
    first, others = server_urls(args)
    return NodeConfig(
        server_url=first,
        fallback_server_urls=others,
        channel=args.channel,
        role=role,
        max_neighbours=args.max_neighbours,
        target_neighbours=min(target_neighbours, args.max_neighbours),
        upload_limit_bps=limit_bps,
        rtc=rtc_config(args),
        peer_exchange=not args.no_peer_exchange,
        hop_trace_path=args.hop_trace,
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_node_arguments(parser, max_neighbours=32)


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_relay(args))


async def _relay(args: argparse.Namespace) -> int:
    config = node_config(args, "relay", target_neighbours=8)
    node = SwarmNode(replace(config, swarm=relay_config(config.swarm)))
    stats: dict[str, Any] = {}
    try:
        await run_until_stopped(node, args.duration, args.status_interval)
    finally:
        stats = node.stats()
        await node.close()
        write_stats(args.stats_json, stats)
    return 0
