"""Real aiortc peers on this machine, connected through the in-process loopback relay."""

from __future__ import annotations

import asyncio
import hashlib
import json
import struct
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from waiting import hold_still, wait_until

from streamer.transport.ice_path import aioice_connection
from streamer.transport.rtc import (
    ANSWERER,
    OFFERER,
    RELAY_GONE,
    PeerManager,
    RtcConfig,
    parse_trickled_candidate,
)
from tests.loopback_signaling import LoopbackRelay

pytestmark = pytest.mark.timeout(60)

FAST = RtcConfig(connect_timeout_s=8.0, watchdog_interval_s=0.1)


@dataclass
class Recorder:
    """A PeerListener that keeps everything for assertions (latest role / reason per peer)."""

    opened: dict[str, str] = field(default_factory=dict)
    closed: dict[str, str] = field(default_factory=dict)
    messages: dict[str, list[bytes]] = field(default_factory=dict)
    writable: dict[str, int] = field(default_factory=dict)
    live: set[str] = field(default_factory=set)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def on_peer_opened(self, peer_id: str, role: str) -> None:
        assert peer_id not in self.live, "opened twice without a close"
        self.live.add(peer_id)
        self.opened[peer_id] = role
        self.closed.pop(peer_id, None)
        self.changed.set()

    def on_peer_message(self, peer_id: str, data: bytes) -> None:
        assert peer_id in self.live, "message from a peer that is not open"
        self.messages.setdefault(peer_id, []).append(data)
        self.changed.set()

    def on_peer_writable(self, peer_id: str) -> None:
        assert peer_id in self.live
        self.writable[peer_id] = self.writable.get(peer_id, 0) + 1
        self.changed.set()

    def on_peer_closed(self, peer_id: str, reason: str) -> None:
        assert peer_id not in self.closed, "closed twice"
        self.live.discard(peer_id)
        self.closed[peer_id] = reason
        self.changed.set()

    async def wait_for(self, predicate: object, timeout_s: float) -> None:
        assert callable(predicate)
        async with asyncio.timeout(timeout_s):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()


@dataclass
class Node:
    peer_id: str
    manager: PeerManager
    events: Recorder


class Swarm:
    """A few managers on one loopback relay."""

    def __init__(self, config: RtcConfig = FAST) -> None:
        self.relay = LoopbackRelay()
        self.config = config
        self.nodes: dict[str, Node] = {}

    def add(self, peer_id: str, config: RtcConfig | None = None, relay: Any = None) -> Node:
        events = Recorder()
        manager = PeerManager(
            self.relay.endpoint(peer_id), events, config=config or self.config, relay=relay
        )
        self.relay.attach(peer_id, manager.handle_signal)
        node = self.nodes[peer_id] = Node(peer_id, manager, events)
        return node

    async def close(self) -> None:
        for node in self.nodes.values():
            await node.manager.close()


@pytest.fixture
async def swarm() -> AsyncIterator[Swarm]:
    s = Swarm()
    yield s
    await s.close()


async def open_pair(swarm: Swarm, a_id: str = "alice", b_id: str = "bob") -> tuple[Node, Node]:
    a, b = swarm.add(a_id), swarm.add(b_id)
    assert a.manager.connect(b_id)
    await a.events.wait_for(lambda: b_id in a.events.opened, 10)
    await b.events.wait_for(lambda: a_id in b.events.opened, 10)
    return a, b


async def test_a_loopback_connection_reports_a_host_pair_and_its_rtt() -> None:
    swarm = Swarm(replace(FAST, rtt_probe_interval_s=0.1))
    try:
        a, _ = await open_pair(swarm)
        async with asyncio.timeout(5):
            while (stats := a.manager.stats("bob")) is None or not (stats.ice and stats.ice.rtt_s):
                await asyncio.sleep(0.05)
        assert stats.ice.pair_type == "host" and stats.ice.protocol == "udp"
        assert 0 < stats.ice.rtt_s < 0.5
        assert a.manager.pair_types_opened == {"host": 1}
    finally:
        await swarm.close()


async def test_without_ice_servers_no_public_stun_server_is_used(swarm: Swarm) -> None:
    # aiortc falls back to stun.l.google.com when iceServers is None; the manager passes [].
    a, _ = await open_pair(swarm)
    connection = aioice_connection(a.manager._peers["bob"].pc)
    assert connection is not None
    assert connection.stun_server is None and connection.turn_server is None


async def test_unordered_messages_travel_on_the_negotiated_second_channel(swarm: Swarm) -> None:
    """Both ends make the unordered channel (same id, no in-band announcement); a message sent
    unordered goes on it and reaches the listener like any other, and counts in the stats."""
    a, b = await open_pair(swarm)
    a_peer = a.manager._peers["bob"]
    b_peer = b.manager._peers["alice"]
    async with asyncio.timeout(5):
        while not all(
            p.pieces_channel is not None and p.pieces_channel.readyState == "open"
            for p in (a_peer, b_peer)
        ):
            await asyncio.sleep(0.02)
    assert a_peer.pieces_channel is not None and b_peer.pieces_channel is not None
    assert a_peer.pieces_channel.id == b_peer.pieces_channel.id == FAST.pieces_channel_id
    assert not a_peer.pieces_channel.ordered and a_peer.channel is not None
    assert a_peer.channel.ordered
    sent_on: list[bytes] = []
    original = a_peer.pieces_channel.send

    def spy(data: bytes) -> None:
        sent_on.append(data)
        original(data)

    a_peer.pieces_channel.send = spy  # type: ignore[method-assign]
    assert a.manager.send("bob", b"piece", ordered=False)
    assert a.manager.send("bob", b"control")
    await b.events.wait_for(lambda: len(b.events.messages.get("alice", [])) == 2, 5)
    assert sorted(b.events.messages["alice"]) == [b"control", b"piece"]
    assert sent_on == [b"piece"]  # only the unordered one went on the second channel
    stats = a.manager.stats("bob")
    assert stats is not None and stats.bytes_sent == len(b"piece") + len(b"control")


async def test_two_peers_exchange_messages_both_ways(swarm: Swarm) -> None:
    a, b = await open_pair(swarm)
    assert a.events.opened == {"bob": OFFERER}
    assert b.events.opened == {"alice": ANSWERER}
    assert a.manager.open_peers() == ["bob"] and b.manager.open_peers() == ["alice"]
    assert not a.manager.connect("bob"), "a second connect to an open peer must be refused"

    assert a.manager.send("bob", b"hello bob")
    assert b.manager.send("alice", b"\x00\xffhello alice")
    await b.events.wait_for(lambda: b.events.messages.get("alice"), 5)
    await a.events.wait_for(lambda: a.events.messages.get("bob"), 5)
    assert b.events.messages["alice"] == [b"hello bob"]
    assert a.events.messages["bob"] == [b"\x00\xffhello alice"]

    a_stats, b_stats = a.manager.stats("bob"), b.manager.stats("alice")
    assert a_stats is not None and b_stats is not None
    assert (a_stats.bytes_sent, a_stats.bytes_received) == (9, 13)
    assert (b_stats.bytes_sent, b_stats.bytes_received) == (13, 9)
    assert a_stats.setup_s is not None and 0 < a_stats.setup_s < 10
    # The signals carried the documented convention and nothing else.
    kinds = [data["kind"] for _, _, data in swarm.relay.log]
    assert kinds == ["offer", "answer"]
    assert all(isinstance(data["sdp"], str) for _, _, data in swarm.relay.log)

    assert not a.manager.send("nobody", b"x")
    with pytest.raises(ValueError):
        a.manager.send("bob", bytes(64 * 1024 + 1))


async def test_large_transfer_with_flow_control_arrives_intact_and_in_order(
    swarm: Swarm,
) -> None:
    a, b = await open_pair(swarm)
    message_bytes = 16 * 1024
    total_bytes = 2 * 1024 * 1024
    count = total_bytes // message_bytes
    digest = hashlib.sha256()
    sent = 0
    max_buffered = 0
    started = time.perf_counter()
    while sent < count:
        while sent < count and a.manager.has_room("bob"):
            body = struct.pack("!I", sent) + bytes([sent % 251]) * (message_bytes - 4)
            digest.update(body)
            assert a.manager.send("bob", body)
            sent += 1
            max_buffered = max(max_buffered, a.manager.buffered_amount("bob"))
        if sent < count:
            before = a.events.writable.get("bob", 0)
            await a.events.wait_for(lambda b=before: a.events.writable.get("bob", 0) > b, 10)
    await b.events.wait_for(lambda: len(b.events.messages.get("alice", [])) == count, 30)
    elapsed_s = time.perf_counter() - started

    received = b.events.messages["alice"]
    assert [struct.unpack("!I", m[:4])[0] for m in received] == list(range(count))
    assert hashlib.sha256(b"".join(received)).digest() == digest.digest()
    # Flow control held: the buffer never grew past the high-water mark by more than a message.
    assert max_buffered <= swarm.config.buffer_high_bytes + message_bytes
    assert a.events.writable["bob"] >= 1
    stats = b.manager.stats("alice")
    assert stats is not None and stats.bytes_received == total_bytes
    rate_mbps = total_bytes * 8 / elapsed_s / 1e6
    print(
        f"\none process, 16 KiB messages: {total_bytes} bytes in {elapsed_s:.2f} s"
        f" = {rate_mbps:.1f} Mbit/s ({total_bytes / elapsed_s / 1e6:.2f} MB/s)"
    )


async def test_glare_ends_with_one_connection(swarm: Swarm) -> None:
    a, b = swarm.add("peer-a"), swarm.add("peer-b")
    # Both offer at the same moment: both offers are on the wire before either is answered.
    assert a.manager.connect("peer-b") and b.manager.connect("peer-a")
    await a.events.wait_for(lambda: "peer-b" in a.events.opened, 10)
    await b.events.wait_for(lambda: "peer-a" in b.events.opened, 10)
    offers = [(frm, to) for frm, to, d in swarm.relay.log if d["kind"] == "offer"]
    assert ("peer-a", "peer-b") in offers and ("peer-b", "peer-a") in offers, offers
    # The greater id's offer stands: peer-b offered, peer-a answered.
    assert b.events.opened["peer-a"] == OFFERER
    assert a.events.opened["peer-b"] == ANSWERER
    assert a.manager.send("peer-b", b"ping") and b.manager.send("peer-a", b"pong")
    await b.events.wait_for(lambda: b.events.messages.get("peer-a") == [b"ping"], 5)
    await a.events.wait_for(lambda: a.events.messages.get("peer-b") == [b"pong"], 5)
    await hold_still(0.3)  # the losing offer's connection must not close the winner afterwards
    assert not a.events.closed and not b.events.closed


async def test_hostile_signals_cost_nothing_else(swarm: Swarm) -> None:
    a, b = await open_pair(swarm)
    hostile: list[dict[str, Any]] = [
        {"kind": "offer", "sdp": "v=0 this is not sdp"},
        {"kind": "offer", "sdp": 12},
        {"kind": "answer", "sdp": "v=0\r\n"},
        {"kind": "candidate", "candidate": "candidate:garbage", "sdpMid": "0"},
        {"kind": "candidate", "candidate": ["x"]},
        {"kind": "teleport"},
        {"no": "kind"},
    ]
    for data in hostile:
        a.manager.handle_signal("mallory", data)
    a.manager.handle_signal("mallory", "not an object")  # type: ignore[arg-type]
    a.manager.handle_signal("", {"kind": "offer", "sdp": "x"})
    a.manager.handle_signal("m" * 500, {"kind": "offer", "sdp": "x"})
    # A candidate and an answer from bob that arrive out of the blue on an open link: ignored.
    a.manager.handle_signal("bob", {"kind": "answer", "sdp": "v=0\r\n"})
    a.manager.handle_signal("bob", {"kind": "candidate", "candidate": "candidate:1 1 udp"})
    await wait_until(lambda: a.manager.bad_signals >= 5, 5, "the hostile signals counted as bad")
    assert a.manager.pending_peers() == [] and a.manager.open_peers() == ["bob"]
    assert "mallory" not in a.events.opened and "mallory" not in a.events.closed
    assert a.manager.send("bob", b"still fine")
    await b.events.wait_for(lambda: b.events.messages.get("alice") == [b"still fine"], 5)
    assert not a.events.closed and not b.events.closed


async def test_text_message_closes_only_the_sender(swarm: Swarm) -> None:
    a, b = await open_pair(swarm)
    c = swarm.add("carol")
    assert c.manager.connect("alice")
    await a.events.wait_for(lambda: "carol" in a.events.opened, 10)
    await c.events.wait_for(lambda: "alice" in c.events.opened, 10)
    channel = c.manager._peers["alice"].channel  # the raw channel: send what the API refuses
    assert channel is not None
    channel.send("text is not the swarm protocol")
    await a.events.wait_for(lambda: "carol" in a.events.closed, 5)
    assert a.events.closed["carol"] == "bad_message"
    await c.events.wait_for(lambda: "alice" in c.events.closed, 10)
    assert a.manager.open_peers() == ["bob"]
    assert a.manager.send("bob", b"unaffected")
    await b.events.wait_for(lambda: b.events.messages.get("alice") == [b"unaffected"], 5)


async def test_connect_to_a_silent_peer_times_out() -> None:
    swarm = Swarm(RtcConfig(connect_timeout_s=1.0, watchdog_interval_s=0.1))
    try:
        a = swarm.add("alice")
        swarm.add("ghost")
        swarm.relay.blackholed.add("ghost")
        started = time.monotonic()
        assert a.manager.connect("ghost")
        await a.events.wait_for(lambda: "ghost" in a.events.closed, 5)
        assert a.events.closed["ghost"] == "timeout"
        # Not before the timeout (a wall clock only runs late on a busy machine, never early).
        assert time.monotonic() - started > 0.9
        assert "ghost" not in a.events.opened
    finally:
        await swarm.close()


async def test_disconnect_reaches_the_other_side(swarm: Swarm) -> None:
    a, b = await open_pair(swarm)
    a.manager.disconnect("bob")
    assert a.events.closed == {"bob": "local"}
    started = time.monotonic()
    await b.events.wait_for(lambda: "alice" in b.events.closed, 10)
    print(
        f"\nremote saw the close after {time.monotonic() - started:.2f} s:"
        f" {b.events.closed['alice']}"
    )
    assert not b.manager.send("alice", b"late")
    # The pair can connect again afterwards.
    assert b.manager.connect("alice")
    await b.events.wait_for(lambda: b.manager.open_peers() == ["alice"], 10)


async def test_setup_is_staggered_and_all_connect() -> None:
    swarm = Swarm(RtcConfig(max_concurrent_setups=1, connect_timeout_s=8.0))
    try:
        hub = swarm.add("hub")
        leaves = [swarm.add(f"leaf{i}") for i in range(3)]
        in_flight_seen = []

        for leaf in leaves:
            assert hub.manager.connect(leaf.peer_id)
        async with asyncio.timeout(20):
            while len(hub.events.opened) < 3:
                in_flight_seen.append(
                    len([p for p in hub.manager._peers.values() if p.state == "connecting"])
                )
                await asyncio.sleep(0.02)
        assert max(in_flight_seen) == 1
        assert set(hub.events.opened) == {"leaf0", "leaf1", "leaf2"}
        assert not hub.events.closed
    finally:
        await swarm.close()


def test_trickled_browser_candidates_parse() -> None:
    chromium = {
        "candidate": "candidate:3573512134 1 udp 2122260223 3c8e1b7a-2f63-4f8e-9c1f-"
        "0d1f1b2c3d4e.local 54321 typ host generation 0 ufrag aBcD network-id 1",
        "sdpMid": "0",
        "sdpMLineIndex": 0,
    }
    candidate = parse_trickled_candidate(chromium)
    assert candidate is not None
    assert candidate.ip.endswith(".local") and candidate.port == 54321
    assert candidate.type == "host" and candidate.protocol == "udp"
    assert candidate.sdpMid == "0" and candidate.sdpMLineIndex == 0
    firefox = {
        "candidate": "candidate:0 1 UDP 2122252543 192.0.2.7 40000 typ host",
        "sdpMid": None,
        "sdpMLineIndex": None,
    }
    candidate = parse_trickled_candidate(firefox)
    assert candidate is not None and candidate.ip == "192.0.2.7"
    assert candidate.sdpMLineIndex == 0  # aiortc needs one of the two
    assert parse_trickled_candidate({"candidate": ""}) is None  # end-of-candidates
    for bad in (
        {"candidate": "candidate:1 1 udp"},
        {"candidate": 5},
        {"candidate": "candidate:0 1 UDP 1 1.2.3.4 5 typ host", "sdpMid": 3},
    ):
        with pytest.raises(ValueError):
            parse_trickled_candidate(bad)


async def test_a_silent_neighbour_is_closed_as_idle(swarm: Swarm) -> None:
    a = swarm.add("alice", RtcConfig(idle_timeout_s=1.0, watchdog_interval_s=0.1))
    b = swarm.add("bob")  # default config: no idle timeout on bob's side
    assert a.manager.connect("bob")
    await b.events.wait_for(lambda: "alice" in b.events.opened, 10)
    await a.events.wait_for(lambda: "bob" in a.events.opened, 10)
    # bob keeps talking for longer than the idle timeout, then goes silent (a vanished sender).
    for _ in range(6):
        assert b.manager.send("alice", b"buffer map")
        await hold_still(0.3)
    assert "bob" not in a.events.closed
    started = time.monotonic()
    await a.events.wait_for(lambda: "bob" in a.events.closed, 5)
    assert a.events.closed["bob"] == "idle"
    assert time.monotonic() - started > 0.5  # the idle timeout lapsed, it was not cut short


async def test_signals_of_a_connection_asked_via_a_neighbour_never_touch_the_server() -> None:
    """Peer exchange: connect(peer, via=neighbour) sends the offer through the relay callback,
    the answerer's answer goes back through it too, and the link opens like any other."""
    relay = LoopbackRelay()
    relay.blackholed.update({"alice", "bob"})  # the server is of no use here
    through: list[tuple[str, str, str, str]] = []
    managers: dict[str, PeerManager] = {}
    events = {"alice": Recorder(), "bob": Recorder()}

    def relay_for(own_id: str) -> Any:
        def carry(via: str, to: str, data: Any) -> bool:
            through.append((own_id, via, to, data["kind"]))
            copy = json.loads(json.dumps(dict(data)))
            asyncio.get_running_loop().call_soon(managers[to].handle_signal, own_id, copy, via)
            return True

        return carry

    for peer_id in ("alice", "bob"):
        managers[peer_id] = PeerManager(
            relay.endpoint(peer_id), events[peer_id], config=FAST, relay=relay_for(peer_id)
        )
    try:
        assert managers["alice"].connect("bob", via="carol")
        await events["alice"].wait_for(lambda: "bob" in events["alice"].opened, 10)
        await events["bob"].wait_for(lambda: "alice" in events["bob"].opened, 10)
        assert relay.log == []
        assert [t[:3] for t in through] == [("alice", "carol", "bob"), ("bob", "carol", "alice")]
        assert [t[3] for t in through] == ["offer", "answer"]
        assert managers["alice"].open_peers_via_exchange() == ["bob"]
        assert managers["bob"].open_peers_via_exchange() == ["alice"]
        assert managers["alice"].opened_via_exchange == managers["bob"].opened_via_exchange == 1
        assert managers["alice"].send("bob", b"over the new link")
        await events["bob"].wait_for(lambda: events["bob"].messages.get("alice"), 5)
    finally:
        for manager in managers.values():
            await manager.close()


async def test_an_offer_no_neighbour_can_carry_closes_at_once(swarm: Swarm) -> None:
    """The relay refuses the offer (that neighbour's link is gone): the caller hears
    relay_gone now, not connect_timeout_s later, and can try another way."""
    refused: list[tuple[str, str]] = []

    def refuse(via: str, to: str, data: Any) -> bool:
        refused.append((via, to))
        return False

    events = Recorder()
    manager = PeerManager(swarm.relay.endpoint("alice"), events, config=FAST, relay=refuse)
    try:
        started = time.monotonic()
        assert manager.connect("bob", via="carol")
        await events.wait_for(lambda: "bob" in events.closed, 5)
        assert events.closed["bob"] == RELAY_GONE
        assert time.monotonic() - started < FAST.connect_timeout_s / 2
        assert refused == [("carol", "bob")]
        assert manager.pending_peers() == []
    finally:
        await manager.close()


async def test_a_pending_offer_closes_when_its_relaying_neighbour_goes(swarm: Swarm) -> None:
    """alice offers a link to bob through carol; carol leaves before bob's answer came back:
    the offer is closed (relay_gone) as soon as alice's link to carol closes."""
    swallowed: list[str] = []

    def swallow(via: str, to: str, data: Any) -> bool:
        swallowed.append(data["kind"])  # accepted, never delivered: carol is on her way out
        return True

    alice, carol = swarm.add("alice", relay=swallow), swarm.add("carol")
    assert alice.manager.connect("carol")
    await alice.events.wait_for(lambda: "carol" in alice.events.opened, 10)
    assert alice.manager.connect("bob", via="carol")
    async with asyncio.timeout(5):
        while swallowed != ["offer"]:
            await asyncio.sleep(0.02)
    assert "bob" in alice.manager.pending_peers()
    started = time.monotonic()
    await carol.manager.close()
    await alice.events.wait_for(lambda: "bob" in alice.events.closed, 5)
    assert alice.events.closed["bob"] == RELAY_GONE
    assert alice.events.closed["carol"] != RELAY_GONE
    assert time.monotonic() - started < FAST.connect_timeout_s / 2


async def test_without_a_relay_a_connection_via_a_neighbour_is_refused(swarm: Swarm) -> None:
    a = swarm.add("alice")
    assert not a.manager.connect("bob", via="carol")
    assert a.manager.pending_peers() == []


async def test_bytes_delivered_counts_what_sctp_acknowledged(swarm: Swarm) -> None:
    """The uplink's delivered count trails what was sent while data is queued or in flight,
    and catches up once the peer has acknowledged it all (SwarmPeer.uplink_delivered)."""
    a, b = await open_pair(swarm)
    start = a.manager.bytes_delivered()
    count = 64
    for i in range(count):
        assert a.manager.send("bob", bytes([i % 251]) * 16 * 1024, ordered=False)
    sent = a.manager.total_bytes_sent
    assert a.manager.bytes_delivered() < sent  # queued or in flight: not delivered yet
    await b.events.wait_for(lambda: len(b.events.messages.get("alice", [])) == count, 30)
    async with asyncio.timeout(10):  # (no event says "acknowledged": poll)
        while a.manager.bytes_delivered() < sent:
            await asyncio.sleep(0.02)
    assert a.manager.bytes_delivered() - start == count * 16 * 1024


async def test_a_link_that_stops_acknowledging_leaves_the_flight_count() -> None:
    """bytes_in_flight counts what open links hold unacknowledged (the driver's flight window),
    except on a link with no acknowledgement for ack_stall_s: a peer that vanished must not hold
    back what goes to the others. bytes_outstanding still counts it (the delivered meter)."""
    swarm = Swarm(replace(FAST, ack_stall_s=0.5))
    try:
        a, b = await open_pair(swarm)
        assert a.manager.bytes_in_flight() == 0
        sctp = b.manager._peers["alice"].pc.sctp  # bob vanishes: his SCTP hears nothing more

        async def deaf(data: bytes) -> None:
            return None

        sctp._handle_data = deaf
        assert a.manager.send("bob", b"x" * 16 * 1024, ordered=False)
        assert a.manager.bytes_in_flight() == 16 * 1024
        started = time.monotonic()
        async with asyncio.timeout(5):
            while a.manager.bytes_in_flight() > 0:
                await asyncio.sleep(0.02)
        assert time.monotonic() - started >= 0.4
        assert a.manager.bytes_outstanding() == 16 * 1024
    finally:
        await swarm.close()
