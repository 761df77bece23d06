"""The signaling client against the real signaling server (and a scripted one for bad servers)."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web

from signaling.app import RunningServer, start_server
from signaling.config import ServerConfig
from streamer.transport.signaling_client import (
    BroadcastEnded,
    Disconnected,
    MediaUpdate,
    OtherMessage,
    PeersUpdate,
    Reconnected,
    ServerError,
    SignalingClient,
    SignalingError,
    SignalingEvent,
    SignalMessage,
    backoff_delay_s,
    parse_failover_urls,
    server_order,
    websocket_url,
)

pytestmark = pytest.mark.timeout(60)

MEDIA = {
    "mime_type": 'video/mp4; codecs="avc1.42C01E, mp4a.40.2"',
    "chunk_seconds": 1.0,
    "init_segment": "AAAAGGZ0eXA=",
    "public_key": "MCowBQYDK2VwAyEA",
    "bitrate_bps": 1_000_000,
}


@pytest.fixture
async def server() -> AsyncIterator[RunningServer]:
    running = await start_server(ServerConfig(host="127.0.0.1", port=0))
    yield running
    await running.close()


async def next_of(
    client: SignalingClient, kind: type[SignalingEvent], timeout_s: float = 5.0
) -> SignalingEvent:
    """Skip events of other types until one of `kind` arrives."""
    async with asyncio.timeout(timeout_s):
        while True:
            event = await client.next_event()
            if isinstance(event, kind):
                return event


def test_websocket_url_from_the_http_base() -> None:
    assert websocket_url("http://127.0.0.1:8080") == "ws://127.0.0.1:8080/ws"
    assert websocket_url("https://example.org/") == "wss://example.org/ws"
    assert websocket_url("ws://h:1/ws") == "ws://h:1/ws"
    with pytest.raises(ValueError):
        websocket_url("ftp://h")


async def test_join_signal_peers_media_and_end(server: RunningServer) -> None:
    caster = SignalingClient(server.url, channel="demo", role="broadcaster", secret="s3")
    relay = SignalingClient(server.url, channel="demo", role="relay")
    try:
        caster_welcome = await caster.connect()
        assert caster_welcome.role == "broadcaster" and caster_welcome.media is None
        assert await caster.publish(MEDIA)
        await asyncio.sleep(0.1)
        welcome = await relay.connect()
        assert welcome.channel == "demo" and welcome.peer_id != caster_welcome.peer_id
        assert welcome.media == MEDIA
        assert relay.peer_id == welcome.peer_id

        offer = {"kind": "offer", "sdp": "v=0\r\n"}
        assert await relay.signal(caster_welcome.peer_id, offer)
        event = await next_of(caster, SignalMessage)
        assert isinstance(event, SignalMessage)
        assert (event.from_id, event.data) == (welcome.peer_id, offer)

        assert await relay.get_peers(4)
        peers = await next_of(relay, PeersUpdate)
        assert isinstance(peers, PeersUpdate)
        assert caster_welcome.peer_id in [p.peer_id for p in peers.peers]
        assert welcome.peer_id not in [p.peer_id for p in peers.peers]

        assert await relay.status(neighbours=[caster_welcome.peer_id], upload_bps=1000)
        assert await caster.end()
        ended = await next_of(relay, BroadcastEnded)
        assert isinstance(ended, BroadcastEnded) and ended.reason == "ended"
    finally:
        await relay.close()
        await caster.close()
    # After close() the iterator ends (it does not hang) and sending is refused, not raised.
    async with asyncio.timeout(2):
        async for _ in relay.events():
            pass
    assert not await relay.signal("x", {"kind": "offer", "sdp": "x"})


async def test_a_refused_join_raises_with_the_server_code(server: RunningServer) -> None:
    client = SignalingClient(server.url, channel="no spaces allowed", role="viewer")
    with pytest.raises(SignalingError) as raised:
        await client.connect()
    assert raised.value.code == "bad_channel_name"


async def test_an_unreachable_server_raises_unreachable(server: RunningServer) -> None:
    url = server.url
    await server.close()
    client = SignalingClient(url, channel="demo", role="viewer", connect_timeout_s=3)
    with pytest.raises(SignalingError) as raised:
        await client.connect()
    assert raised.value.code == "unreachable"


async def test_reconnects_and_republishes_after_a_server_restart() -> None:
    first = await start_server(ServerConfig(host="127.0.0.1", port=0))
    port = first.port
    caster = SignalingClient(
        first.url, channel="demo", role="broadcaster", secret="s3", backoff_initial_s=0.1
    )
    viewer = SignalingClient(first.url, channel="demo", role="viewer", backoff_initial_s=0.1)
    second: RunningServer | None = None
    try:
        await caster.connect()
        await caster.publish(MEDIA)
        assert "want_peers" not in viewer._join_message()  # a first join wants candidates
        old_viewer_id = (await viewer.connect()).peer_id
        assert viewer._join_message()["want_peers"] == 0  # a rejoin does not
        await first.close()
        lost = await next_of(viewer, Disconnected)
        assert isinstance(lost, Disconnected) and 0 <= lost.retry_in_s <= 0.1
        await asyncio.sleep(0.3)
        second = await start_server(ServerConfig(host="127.0.0.1", port=port))
        back = await next_of(viewer, Reconnected, timeout_s=10)
        assert isinstance(back, Reconnected)
        # The restarted server stored nothing, yet the id is the same (derived from our secret).
        assert back.welcome.peer_id == old_viewer_id and not back.id_changed
        await next_of(caster, Reconnected, timeout_s=10)
        assert viewer.reconnects == 1 and caster.reconnects == 1
        # The broadcaster re-published on its own: the viewer has the media again.
        if back.welcome.media is None:
            update = await next_of(viewer, MediaUpdate)
            assert isinstance(update, MediaUpdate) and update.media == MEDIA
        else:
            assert back.welcome.media == MEDIA
    finally:
        await viewer.close()
        await caster.close()
        if second is not None:
            await second.close()


async def scripted_server(
    script: Callable[[web.WebSocketResponse], Awaitable[None]],
) -> tuple[web.AppRunner, str]:
    """A one-route server that runs `script` on each socket (for misbehaving servers)."""

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await script(ws)
        return ws

    app = web.Application()
    app.router.add_get("/ws", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}"


WELCOME = {
    "type": "welcome",
    "v": 1,
    "peer_id": "me",
    "channel": "demo",
    "role": "viewer",
    "ice_servers": [{"urls": "stun:stun.example.org:3478"}],
    "media": None,
    "peers": [],
    "heartbeat_s": 20.0,
}


async def test_malformed_messages_are_skipped_and_a_fatal_error_ends_the_session() -> None:
    async def script(ws: web.WebSocketResponse) -> None:
        join = await ws.receive_json()
        secret = join.pop("peer_secret")
        assert isinstance(secret, str) and len(secret) >= 16
        assert join == {"type": "join", "v": 1, "channel": "demo", "role": "viewer"}
        await ws.send_json(WELCOME)
        await ws.send_str("{not json")
        await ws.send_json(["not", "an", "object"])
        await ws.send_json({"type": "signal", "from": 5, "data": {}})
        await ws.send_json({"type": "peers", "peers": "nope"})
        await ws.send_json(
            {"type": "error", "code": "rate_limited", "message": "slow down", "fatal": False}
        )
        await ws.send_json({"type": "future_thing", "x": 1})
        await ws.send_json(
            {"type": "error", "code": "forbidden", "message": "go away", "fatal": True}
        )
        await ws.close()

    runner, url = await scripted_server(script)
    client = SignalingClient(url, channel="demo", role="viewer", backoff_initial_s=0.05)
    try:
        welcome = await client.connect()
        assert welcome.ice_servers[0].urls == ("stun:stun.example.org:3478",)
        seen: list[SignalingEvent] = []
        with pytest.raises(SignalingError) as raised:
            async with asyncio.timeout(5):
                async for event in client.events():
                    seen.append(event)
        assert raised.value.code == "forbidden"
        assert seen[0] == ServerError("rate_limited", "slow down", False)
        assert seen[1] == OtherMessage("future_thing", {"type": "future_thing", "x": 1})
        assert seen[2] == ServerError("forbidden", "go away", True)
        assert len(seen) == 3  # the malformed ones were skipped, and there was no reconnect
    finally:
        await client.close()
        await runner.cleanup()


async def test_a_bad_welcome_is_a_clear_error() -> None:
    async def script(ws: web.WebSocketResponse) -> None:
        await ws.receive_json()
        await ws.send_str(json.dumps({**WELCOME, "v": 2}))
        await ws.receive()

    runner, url = await scripted_server(script)
    try:
        with pytest.raises(SignalingError) as raised:
            await SignalingClient(url, channel="demo", role="viewer").connect()
        assert raised.value.code == "version_mismatch"
    finally:
        await runner.cleanup()


def test_backoff_is_full_jitter_under_a_doubling_cap() -> None:
    rng = random.Random(3)
    for attempt, cap_s in [(0, 0.25), (1, 0.5), (3, 2.0), (5, 5.0), (60, 5.0)]:
        delays = [backoff_delay_s(attempt, rng) for _ in range(400)]
        assert all(0 <= d < cap_s for d in delays)
        # Spread over the whole window (no herd at one instant): both halves well used.
        low = sum(d < cap_s / 2 for d in delays)
        assert 140 < low < 260, (attempt, low)


def test_each_client_has_its_own_server_order() -> None:
    urls = [f"ws://s{i}/ws" for i in range(4)]
    orders = {tuple(server_order([*urls, urls[0]], random.Random(seed))) for seed in range(30)}
    assert all(sorted(order) == urls for order in orders)  # each once, none lost
    assert len(orders) > 10  # spread: clients do not all start on one server
    first = {order[0] for order in orders}
    assert first == set(urls)


async def test_connect_moves_on_to_the_next_server(server: RunningServer) -> None:
    dead = "http://127.0.0.1:9"
    for seed in range(4):  # whichever order the client drew
        client = SignalingClient(
            [dead, server.url], channel="demo", role="viewer", rng=random.Random(seed)
        )
        welcome = await client.connect()
        assert client.url == websocket_url(server.url)
        assert welcome.peer_id
        await client.close()


def test_the_failover_urls_of_a_welcome_are_checked_and_capped() -> None:
    listed = ["https://b.example", "ftp://c.example", 7, "http://d.example:8080/"]
    assert parse_failover_urls(listed) == ("wss://b.example/ws", "ws://d.example:8080/ws")
    assert parse_failover_urls("https://b.example") == ()
    many = [f"https://s{i}.example" for i in range(20)]
    assert len(parse_failover_urls(many)) == 8


async def test_a_client_given_one_server_fails_over_to_those_its_welcome_names() -> None:
    spare = await start_server(ServerConfig(host="127.0.0.1", port=0))
    first = await start_server(ServerConfig(host="127.0.0.1", port=0, failover_urls=(spare.url,)))
    viewer = SignalingClient(first.url, channel="demo", role="viewer", backoff_initial_s=0.1)
    try:
        welcome = await viewer.connect()
        assert viewer.urls == [websocket_url(first.url), websocket_url(spare.url)]
        await first.close()
        back = await next_of(viewer, Reconnected, timeout_s=10)
        assert isinstance(back, Reconnected)
        assert viewer.url == websocket_url(spare.url)
        assert back.welcome.peer_id == welcome.peer_id and not back.id_changed
    finally:
        await viewer.close()
        await spare.close()
