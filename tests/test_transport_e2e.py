"""Three peers of one channel find each other through the real signaling server and talk."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

import pytest

from signaling.app import start_server
from signaling.config import ServerConfig
from streamer.transport.rtc import PeerManager, RtcConfig, dispatch_signaling_event
from streamer.transport.signaling_client import SignalingClient

pytestmark = pytest.mark.timeout(60)


@dataclass
class Inbox:
    """A listener that answers every opened neighbour with a greeting naming itself."""

    name: str
    manager: PeerManager | None = None
    received: dict[str, list[bytes]] = field(default_factory=dict)
    opened: set[str] = field(default_factory=set)
    closed: dict[str, str] = field(default_factory=dict)

    def on_peer_opened(self, peer_id: str, role: str) -> None:
        self.opened.add(peer_id)
        assert self.manager is not None
        assert self.manager.send(peer_id, f"hello from {self.name}".encode())

    def on_peer_message(self, peer_id: str, data: bytes) -> None:
        self.received.setdefault(peer_id, []).append(data)

    def on_peer_writable(self, peer_id: str) -> None:
        pass

    def on_peer_closed(self, peer_id: str, reason: str) -> None:
        self.closed[peer_id] = reason


async def route(client: SignalingClient, manager: PeerManager) -> None:
    async for event in client.events():
        dispatch_signaling_event(manager, event)


async def test_three_peers_of_one_channel_form_a_mesh() -> None:
    server = await start_server(ServerConfig(host="127.0.0.1", port=0))
    names = ["caster", "relay", "viewer"]
    roles = {"caster": "broadcaster", "relay": "relay", "viewer": "viewer"}
    clients: dict[str, SignalingClient] = {}
    managers: dict[str, PeerManager] = {}
    inboxes: dict[str, Inbox] = {}
    routers = []
    try:
        for name in names:
            secret = "s3" if name == "caster" else None
            client = SignalingClient(server.url, channel="e2e", role=roles[name], secret=secret)
            welcome = await client.connect()
            inbox = Inbox(name)
            manager = PeerManager(
                client, inbox, ice_servers=welcome.ice_servers, config=RtcConfig()
            )
            inbox.manager = manager
            clients[name], managers[name], inboxes[name] = client, manager, inbox
            routers.append(asyncio.create_task(route(client, manager)))
            # A newcomer connects to whoever the welcome lists (the ones already there).
            for peer in welcome.peers:
                assert manager.connect(peer.peer_id)
        ids = {name: str(clients[name].peer_id) for name in names}
        async with asyncio.timeout(20):
            while not all(len(inboxes[n].received) == 2 for n in names):
                await asyncio.sleep(0.05)
        for name in names:
            others = {ids[o]: o for o in names if o != name}
            got = {pid: msgs for pid, msgs in inboxes[name].received.items()}
            assert set(got) == set(others)
            for pid, msgs in got.items():
                assert msgs == [f"hello from {others[pid]}".encode()]
            assert sorted(managers[name].open_peers()) == sorted(others)
            assert not inboxes[name].closed

        # The viewer leaves: its neighbours see the connection close.
        await managers["viewer"].close()
        await clients["viewer"].close()
        async with asyncio.timeout(15):
            while not all(ids["viewer"] in inboxes[n].closed for n in ("caster", "relay")):
                await asyncio.sleep(0.05)
        assert managers["caster"].open_peers() == [ids["relay"]]
    finally:
        for task in routers:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for name in managers:
            await managers[name].close()
        for name in clients:
            await clients[name].close()
        await server.close()
