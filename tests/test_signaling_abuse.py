"""Abuse that costs the abuser, not the broadcaster: floods of viewer joins to made-up channels,
per-address caps, claims that lapse when abandoned."""

from __future__ import annotations

import asyncio
import gc
import secrets
import time
from typing import Any

import aiohttp
from aiohttp import web
from signaling_helpers import claim_once_lapsed, expect_closed, join, make_client, media, receive

from signaling.state import STATE, ServerState

FLOOD_JOINS = 2_000


async def _attempt_join(
    session: aiohttp.ClientSession, client: Any, channel: str
) -> tuple[aiohttp.ClientWebSocketResponse, Any]:
    ws = await session.ws_connect(client.make_url("/ws"))
    await ws.send_json({"type": "join", "channel": channel, "role": "viewer"})
    return ws, await receive(ws)


def _held(state: ServerState) -> tuple[int, int, int, int]:
    """What the server holds: channels, peers, sockets, addresses counted."""
    registry = state.registry
    return (
        len(registry.channels),
        len(registry.peers),
        len(state.connections),
        state.ip_limits.addresses(),
    )


def _websocket_objects() -> int:
    gc.collect()
    return sum(isinstance(o, web.WebSocketResponse) for o in gc.get_objects())


async def _settle(state: ServerState, expected: tuple[int, int, int, int]) -> None:
    deadline = time.monotonic() + 5.0
    while _held(state) != expected:
        assert time.monotonic() < deadline, f"holds {_held(state)}, expected {expected}"
        await asyncio.sleep(0.02)


async def test_a_flood_of_held_viewer_joins_never_keeps_a_broadcaster_out(
    aiohttp_client: Any,
) -> None:
    """Loopback is exempt from the per-address caps here: the flood holds 2,000 sockets."""
    client = await make_client(aiohttp_client, heartbeat_s=60.0)  # the bystanders read late
    state = client.app[STATE]
    bystander, _ = await join(client, "bystander", "broadcaster", secret="b")
    await bystander.send_json({"type": "publish", "media": media()})
    watcher, _ = await join(client, "bystander")
    baseline = _held(state)

    semaphore = asyncio.Semaphore(200)
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))

    async def flood_one() -> tuple[aiohttp.ClientWebSocketResponse, Any]:
        async with semaphore:
            return await _attempt_join(session, client, secrets.token_hex(8))

    flood = await asyncio.gather(*(flood_one() for _ in range(FLOOD_JOINS)))
    codes = [reply.get("code", reply["type"]) for _, reply in flood]
    assert codes.count("welcome") == 1_000  # max_waiting_channels: waiting rooms are capped...
    assert codes.count("server_full") == FLOOD_JOINS - 1_000
    assert len(state.registry.owned) == 1
    source, welcome = await join(client, "real", "broadcaster", secret="s")  # ...claims are not
    assert welcome["channel"] == "real"
    await source.close()

    await asyncio.gather(*(ws.close() for ws, _ in flood))
    await session.close()
    # The waiting rooms went with their viewers; the real channel stays claimed (claim TTL).
    channels, *rest = baseline
    await _settle(state, (channels + 1, *rest))
    assert set(state.registry.channels) == {"bystander", "real"}
    await watcher.send_json({"type": "ping"})
    assert await receive(watcher) == {"type": "pong"}  # the bystander never noticed


async def test_from_one_public_address_a_flood_is_refused_cheaply(aiohttp_client: Any) -> None:
    """With the caps applied to loopback (as to any public address), one address gets at most
    its share of sockets and channels, each refusal a clear error."""
    client = await make_client(aiohttp_client, limit_loopback=True)
    state = client.app[STATE]
    baseline = _held(state)
    sockets_before = _websocket_objects()
    semaphore = asyncio.Semaphore(100)
    codes: list[str] = []
    most_channels = 0

    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))

    async def flood_one() -> None:
        nonlocal most_channels
        async with semaphore:
            ws, reply = await _attempt_join(session, client, secrets.token_hex(8))
            codes.append(reply.get("code", reply["type"]))
            most_channels = max(most_channels, len(state.registry.channels))
            await ws.close()

    await asyncio.gather(*(flood_one() for _ in range(FLOOD_JOINS)))
    await session.close()
    assert len(codes) == FLOOD_JOINS
    assert set(codes) <= {"welcome", "too_many_channels", "too_many_connections"}
    assert codes.count("too_many_channels") > 0 and codes.count("too_many_connections") > 0
    assert most_channels <= state.config.max_channels_per_ip
    await _settle(state, baseline)  # nothing left: no channel, peer, socket or address entry
    deadline = time.monotonic() + 5.0
    while _websocket_objects() > sockets_before:  # no refused socket lingers in memory
        assert time.monotonic() < deadline, f"{_websocket_objects() - sockets_before} linger"
        await asyncio.sleep(0.1)
    source, welcome = await join(client, "real", "broadcaster", secret="s")
    assert welcome["channel"] == "real"
    await source.close()


async def test_per_address_caps_refuse_with_a_clear_error(aiohttp_client: Any) -> None:
    client = await make_client(
        aiohttp_client, limit_loopback=True, max_connections_per_ip=3, max_channels_per_ip=2
    )
    first, _ = await join(client, "a")
    second, _ = await join(client, "b")
    third = await client.ws_connect("/ws")
    await third.send_json({"type": "join", "channel": "c", "role": "viewer"})
    error = await expect_closed(third)
    assert error["code"] == "too_many_channels" and "at most 2" in error["message"]
    again, welcome = await join(client, "a")  # a channel it is already in is fine
    assert welcome["channel"] == "a"
    fourth = await client.ws_connect("/ws")
    error = await expect_closed(fourth)
    assert error["code"] == "too_many_connections" and "at most 3" in error["message"]
    assert error["fatal"] is True
    await first.close()
    await again.close()
    state = client.app[STATE]
    deadline = time.monotonic() + 3.0
    while len(state.connections) > 1:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    _, welcome = await join(client, "c")  # a freed socket and channel can be used again
    assert welcome["channel"] == "c"
    await second.close()


async def test_an_abandoned_claim_lapses_unless_its_owner_returns(aiohttp_client: Any) -> None:
    client = await make_client(aiohttp_client, owner_ttl_s=0.3, sweep_interval_s=0.05)
    owner, _ = await join(client, "show", "broadcaster", secret="mine")
    await owner.close()
    thief = await client.ws_connect("/ws")
    await thief.send_json({"type": "join", "channel": "show", "role": "broadcaster", "secret": "x"})
    assert (await expect_closed(thief))["code"] == "channel_owned"  # kept for its owner...
    returned, _ = await join(client, "show", "broadcaster", secret="mine")  # ...who returns
    await returned.close()
    left_at = time.monotonic()
    # then abandoned: it lapses after owner_ttl_s
    await claim_once_lapsed(client, "show", since_s=left_at)
