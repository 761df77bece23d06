"""TURN with a real coturn: credentials from `serve --turn-secret` open an allocation, wrong or
expired ones are refused, and two aiortc peers restricted to relays connect through it and report
the selected candidate pair as `relay` with a measured RTT."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aioice import stun
from aioice.turn import create_turn_endpoint
from test_node_swarm import RecordingNode, broadcast
from turn_helpers import TurnServer, running_turnserver

from signaling.app import RunningServer, start_server
from signaling.config import IceServer, ServerConfig
from signaling.turn_credentials import make_turn_credential
from streamer.node.driver import NodeConfig
from streamer.transport.ice_path import IcePath
from streamer.transport.rtc import PeerManager, RtcConfig, dispatch_signaling_event
from streamer.transport.signaling_client import SignalingClient, Welcome

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def turn(tmp_path: Path) -> Iterator[TurnServer]:
    with running_turnserver(tmp_path) as server:
        yield server


@pytest.fixture
async def signaling(turn: TurnServer) -> AsyncIterator[RunningServer]:
    config = ServerConfig(
        port=0,
        ice_servers=(IceServer((turn.url,), secret_auth=True),),
        turn_secret=turn.secret,
        turn_ttl_s=600.0,
    )
    server = await start_server(config)
    yield server
    await server.close()


class _Sink(asyncio.DatagramProtocol):
    pass


async def allocate(turn: TurnServer, username: str, password: str) -> tuple[str, int]:
    """Open one TURN allocation (UDP) and close it; returns the relayed address."""
    transport, _ = await create_turn_endpoint(
        _Sink, (turn.host, turn.port), username=username, password=password, lifetime=60
    )
    try:
        address = transport.get_extra_info("sockname")
        return (str(address[0]), int(address[1]))
    finally:
        transport.close()


def turn_entry(welcome: Welcome) -> tuple[str, str]:
    [server] = welcome.ice_servers
    assert server.username is not None and server.credential is not None
    return server.username, server.credential


async def test_server_credentials_open_an_allocation_and_bad_ones_are_refused(
    turn: TurnServer, signaling: RunningServer
) -> None:
    client = SignalingClient(signaling.url, channel="turn", role="relay", reconnect=False)
    welcome = await client.connect()
    await client.close()
    username, credential = turn_entry(welcome)
    assert username.endswith(f":{welcome.peer_id}")
    assert turn.secret not in repr(welcome.raw)

    host, port = await allocate(turn, username, credential)
    assert host == "127.0.0.1" and port in turn.relay_ports

    with pytest.raises(stun.TransactionFailed, match="401"):
        await allocate(turn, username, credential[:-4] + "AAA=")
    expired = make_turn_credential(turn.secret, "late", time.time() - 7200, ttl_s=3600)
    with pytest.raises(stun.TransactionFailed, match="401"):
        await allocate(turn, expired.username, expired.credential)
    forged = make_turn_credential("not-the-secret", "mallory", time.time(), ttl_s=3600)
    with pytest.raises(stun.TransactionFailed, match="401"):
        await allocate(turn, forged.username, forged.credential)


@dataclass
class Events:
    opened: dict[str, asyncio.Event] = field(default_factory=dict)
    messages: dict[str, list[bytes]] = field(default_factory=dict)
    got_message: asyncio.Event = field(default_factory=asyncio.Event)
    closed: dict[str, str] = field(default_factory=dict)

    def on_peer_opened(self, peer_id: str, role: str) -> None:
        self.opened.setdefault(peer_id, asyncio.Event()).set()

    def on_peer_message(self, peer_id: str, data: bytes) -> None:
        self.messages.setdefault(peer_id, []).append(data)
        self.got_message.set()

    def on_peer_writable(self, peer_id: str) -> None:
        pass

    def on_peer_closed(self, peer_id: str, reason: str) -> None:
        self.closed[peer_id] = reason

    async def wait_opened(self, peer_id: str, timeout_s: float) -> None:
        async with asyncio.timeout(timeout_s):
            await self.opened.setdefault(peer_id, asyncio.Event()).wait()


async def measured_path(manager: PeerManager, peer_id: str, timeout_s: float) -> IcePath:
    """The peer's ICE path once its RTT has been measured (polled: the probe runs on a timer)."""
    async with asyncio.timeout(timeout_s):
        while True:
            stats = manager.stats(peer_id)
            if stats is not None and stats.ice is not None and stats.ice.rtt_s is not None:
                return stats.ice
            await asyncio.sleep(0.05)


async def test_two_peers_connect_through_turn_only(
    turn: TurnServer, signaling: RunningServer
) -> None:
    config = RtcConfig(ice_transport_policy="relay", rtt_probe_interval_s=0.2)
    peers: list[tuple[SignalingClient, PeerManager, Events]] = []
    routers: list[asyncio.Task[None]] = []

    async def route(client: SignalingClient, manager: PeerManager) -> None:
        async for event in client.events():
            dispatch_signaling_event(manager, event)

    try:
        for role in ("relay", "viewer"):
            client = SignalingClient(signaling.url, channel="turn", role=role, reconnect=False)
            welcome = await client.connect()
            events = Events()
            manager = PeerManager(client, events, ice_servers=welcome.ice_servers, config=config)
            peers.append((client, manager, events))
            routers.append(asyncio.create_task(route(client, manager)))
        (a_client, a, a_events), (b_client, b, b_events) = peers
        a_id, b_id = str(a_client.peer_id), str(b_client.peer_id)
        assert b.connect(a_id)
        await b_events.wait_opened(a_id, 20)
        await a_events.wait_opened(b_id, 5)

        assert a.send(b_id, b"through the relay")
        async with asyncio.timeout(5):
            await b_events.got_message.wait()
        assert b_events.messages[a_id] == [b"through the relay"]

        for manager, other in ((a, b_id), (b, a_id)):
            stats = manager.stats(other)
            assert stats is not None and stats.ice is not None
            assert stats.ice.pair_type == "relay" and stats.ice.local_type == "relay"
            assert manager.pair_types_opened == {"relay": 1}
        # The RTT probe is a STUN check through coturn: measured within a few probe intervals.
        ice = await measured_path(a, b_id, timeout_s=5)
        assert ice.rtt_s is not None and 0 < ice.rtt_s < 0.5
        assert ice.to_json()["pair_type"] == "relay" and ice.to_json()["rtt_ms"] > 0
        assert not a_events.closed and not b_events.closed
    finally:
        for task in routers:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for client, manager, _ in peers:
            await manager.close()
            await client.close()


@pytest.mark.slow
async def test_a_swarm_over_turn_reports_relay_paths_in_its_stats(turn: TurnServer) -> None:
    config = ServerConfig(
        port=0,
        ice_servers=(IceServer((turn.url,), secret_auth=True),),
        turn_secret=turn.secret,
    )
    relay_only = RtcConfig(ice_transport_policy="relay", rtt_probe_interval_s=0.2)
    async with broadcast(server_config=config, rtc=relay_only) as cast:
        watcher = RecordingNode(NodeConfig(cast.server.url, "t", "viewer", rtc=relay_only))
        await watcher.start()
        try:
            async with asyncio.timeout(20):
                while len(watcher.played) < 2 or not all(
                    path["rtt_ms"] for path in watcher.stats()["neighbour_paths"].values()
                ):
                    await asyncio.sleep(0.1)
            stats, source_stats = watcher.stats(), cast.node.stats()
        finally:
            await watcher.close()
    assert stats["neighbour_paths"], stats
    for path in [*stats["neighbour_paths"].values(), *source_stats["neighbour_paths"].values()]:
        assert path["pair_type"] == "relay" and path["local_candidate_type"] == "relay", path
    assert set(stats["ice_pair_types"]) == {"relay"}
    assert all(event.data == cast.released[event.seq] for event in watcher.played)
