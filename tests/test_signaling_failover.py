"""Failover on the server side: a peer id bound to the client's `peer_secret`, kept across
rejoins; a grace period before `peer_left` for a peer that dropped without a goodbye; and the
same on a cluster, where the peer may come back on another process."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
from signaling_helpers import (
    expect_closed,
    expect_silence,
    join,
    make_client,
    media,
    receive_type,
)

from signaling_wire import peer_id_for

GRACE_S = 0.6
SECRET_A = "a" * 20 + "-first-peer"
SECRET_B = "b" * 20 + "-second-peer"
CLUSTER = {"cluster_heartbeat_s": 0.1, "cluster_liveness_s": 0.5}


def cut(ws: aiohttp.ClientWebSocketResponse) -> None:
    """Drop the TCP connection without a WebSocket close (a network loss, a killed process)."""
    ws._writer.transport.abort()  # test-only: aiohttp has no public way to vanish


async def status(ws: aiohttp.ClientWebSocketResponse, *neighbours: str) -> None:
    await ws.send_json({"type": "status", "neighbours": list(neighbours), "upload_bps": 0})


async def linked_pair(
    client: Any, second_client: Any = None
) -> tuple[Any, dict[str, Any], Any, dict[str, Any]]:
    """Two viewers with peer secrets (the second on second_client, if given); the second lists
    the first as its neighbour."""
    a, wa = await join(client, "c", peer_secret=SECRET_A)
    b, wb = await join(second_client or client, "c", peer_secret=SECRET_B)
    await status(b, wa["peer_id"])
    await b.send_json({"type": "ping"})
    await receive_type(b, "pong")  # the status was handled before the pong
    return a, wa, b, wb


async def test_a_peer_secret_gives_the_same_id_on_every_join(aiohttp_client: Any) -> None:
    client = await make_client(aiohttp_client)
    first, welcome = await join(client, "c", peer_secret=SECRET_A)
    assert welcome["peer_id"] == peer_id_for("c", SECRET_A)
    await first.close()
    again, welcome_again = await join(client, "c", peer_secret=SECRET_A)
    assert welcome_again["peer_id"] == welcome["peer_id"]
    other_channel, elsewhere = await join(client, "d", peer_secret=SECRET_A)
    assert elsewhere["peer_id"] != welcome["peer_id"]
    plain, anonymous = await join(client, "c")
    assert anonymous["peer_id"] not in (welcome["peer_id"], elsewhere["peer_id"])
    for ws in (again, other_channel, plain):
        await ws.close()


async def test_a_wrong_secret_never_gets_someone_elses_id(aiohttp_client: Any) -> None:
    client = await make_client(aiohttp_client)
    owner, welcome = await join(client, "c", peer_secret=SECRET_A)
    victim_id = welcome["peer_id"]
    # An intruder that knows the id (peers see it) and tries it every way the join allows.
    intruder, got = await join(
        client, "c", peer_secret=SECRET_A[:-1] + "X", peer_id=victim_id, secret=victim_id
    )
    assert got["peer_id"] != victim_id
    short = await client.ws_connect("/ws")
    await short.send_json({"type": "join", "channel": "c", "role": "viewer", "peer_secret": "x"})
    refused = await receive_type(short, "error")
    assert refused["code"] == "invalid_message"
    # The owner's session is untouched: a signal still reaches it under its id.
    await intruder.send_json({"type": "signal", "to": victim_id, "data": {"kind": "hello"}})
    signal = await receive_type(owner, "signal")
    assert signal["from"] == got["peer_id"]
    for ws in (owner, intruder, short):
        await ws.close()


async def test_rejoining_while_the_old_socket_is_open_replaces_it_quietly(
    aiohttp_client: Any,
) -> None:
    client = await make_client(aiohttp_client, peer_grace_s=GRACE_S)
    old, wa, b, _ = await linked_pair(client)
    new, again = await join(client, "c", peer_secret=SECRET_A)
    assert again["peer_id"] == wa["peer_id"]
    error = await expect_closed(old)
    assert error is not None and error["code"] == "replaced"
    await expect_silence(b, GRACE_S + 0.5)  # no peer_left: the peer never went
    await b.send_json({"type": "signal", "to": wa["peer_id"], "data": {"kind": "x"}})
    assert (await receive_type(new, "signal"))["data"] == {"kind": "x"}
    await new.close()
    assert (await receive_type(b, "peer_left"))["peer_id"] == wa["peer_id"]
    await b.close()


async def test_a_goodbye_is_told_at_once(aiohttp_client: Any) -> None:
    client = await make_client(aiohttp_client, peer_grace_s=30.0)
    a, wa, b, _ = await linked_pair(client)
    await a.close()  # code 1000: gone for good
    assert (await receive_type(b, "peer_left", timeout_s=1.0))["peer_id"] == wa["peer_id"]
    await b.close()


async def test_a_dropped_peer_is_told_gone_after_the_grace_period(aiohttp_client: Any) -> None:
    client = await make_client(aiohttp_client, peer_grace_s=GRACE_S)
    a, wa, b, _ = await linked_pair(client)
    cut(a)
    dropped_at = time.monotonic()
    left = await receive_type(b, "peer_left", timeout_s=GRACE_S + 3)
    waited_s = time.monotonic() - dropped_at
    assert left["peer_id"] == wa["peer_id"]
    assert GRACE_S <= waited_s < GRACE_S + 1.0, waited_s
    await b.close()


async def test_a_peer_back_within_the_grace_period_is_not_told_gone(aiohttp_client: Any) -> None:
    client = await make_client(aiohttp_client, peer_grace_s=GRACE_S)
    a, wa, b, _ = await linked_pair(client)
    cut(a)
    await asyncio.sleep(GRACE_S / 3)
    back, again = await join(client, "c", peer_secret=SECRET_A)
    assert again["peer_id"] == wa["peer_id"]
    await expect_silence(b, GRACE_S + 0.5)
    # Its neighbours and contacts carried over: a later goodbye still reaches b.
    await back.close()
    assert (await receive_type(b, "peer_left"))["peer_id"] == wa["peer_id"]
    await b.close()


async def test_a_neighbour_a_restarted_server_never_saw_is_told_gone(aiohttp_client: Any) -> None:
    """After a restart the server knows nothing of who left; a neighbour a peer keeps listing
    that does not join within twice the grace period is reported gone to that peer."""
    client = await make_client(aiohttp_client, peer_grace_s=GRACE_S)
    b, _ = await join(client, "c", peer_secret=SECRET_B)
    ghost = peer_id_for("c", SECRET_A)
    started = time.monotonic()
    while True:
        await status(b, ghost)
        try:
            left = await receive_type(b, "peer_left", timeout_s=0.3)
            break
        except TimeoutError:
            assert time.monotonic() - started < 2 * GRACE_S + 2
    assert left["peer_id"] == ghost
    assert time.monotonic() - started >= 2 * GRACE_S
    await b.close()


# --- on a cluster ---------------------------------------------------------------------------


async def two_servers(aiohttp_client: Any, redis_url: str) -> tuple[Any, Any]:
    config = {"redis_url": redis_url, "peer_grace_s": GRACE_S, **CLUSTER}
    return await make_client(aiohttp_client, **config), await make_client(aiohttp_client, **config)


async def test_a_peer_moving_to_another_process_keeps_its_id_and_links(
    aiohttp_client: Any, redis_url: str
) -> None:
    server_a, server_b = await two_servers(aiohttp_client, redis_url)
    on_a, wa = await join(server_a, "c", peer_secret=SECRET_A)
    watcher, _ = await join(server_b, "c", peer_secret=SECRET_B)
    await status(watcher, wa["peer_id"])
    await watcher.send_json({"type": "signal", "to": wa["peer_id"], "data": {"kind": "hi"}})
    await receive_type(on_a, "signal")
    # It comes back on B while its old socket on A is still open: A drops that one quietly.
    on_b, again = await join(server_b, "c", peer_secret=SECRET_A)
    assert again["peer_id"] == wa["peer_id"]
    error = await expect_closed(on_a)
    assert error is not None and error["code"] == "replaced"
    await expect_silence(watcher, GRACE_S + 0.6)
    await watcher.send_json({"type": "signal", "to": wa["peer_id"], "data": {"kind": "again"}})
    assert (await receive_type(on_b, "signal"))["data"] == {"kind": "again"}
    await on_b.close()
    await watcher.close()


async def test_a_dropped_peer_on_another_process_is_told_gone_after_the_grace(
    aiohttp_client: Any, redis_url: str
) -> None:
    server_a, server_b = await two_servers(aiohttp_client, redis_url)
    on_a, wa, watcher, _ = await linked_pair(server_a, server_b)
    cut(on_a)
    dropped_at = time.monotonic()
    left = await receive_type(watcher, "peer_left", timeout_s=GRACE_S + 3)
    assert left["peer_id"] == wa["peer_id"]
    assert GRACE_S <= time.monotonic() - dropped_at < GRACE_S + 1.0
    await watcher.close()


async def test_a_dropped_peer_back_on_another_process_is_not_told_gone(
    aiohttp_client: Any, redis_url: str
) -> None:
    server_a, server_b = await two_servers(aiohttp_client, redis_url)
    on_a, wa, watcher, _ = await linked_pair(server_a)
    cut(on_a)
    await asyncio.sleep(GRACE_S / 3)
    on_b, again = await join(server_b, "c", peer_secret=SECRET_A)
    assert again["peer_id"] == wa["peer_id"]
    await expect_silence(watcher, GRACE_S + 0.6)
    await on_b.close()
    await watcher.close()


async def test_a_live_broadcaster_that_dropped_ends_the_broadcast_only_after_the_grace(
    aiohttp_client: Any,
) -> None:
    client = await make_client(aiohttp_client, peer_grace_s=GRACE_S)
    caster, _ = await join(client, "c", "broadcaster", "owner-secret", peer_secret=SECRET_A)
    await caster.send_json({"type": "publish", "media": media()})
    viewer, _ = await join(client, "c", peer_secret=SECRET_B)
    cut(caster)
    dropped_at = time.monotonic()
    ended = await receive_type(viewer, "broadcast_ended", timeout_s=GRACE_S + 3)
    assert ended["reason"] == "broadcaster_left"
    assert GRACE_S <= time.monotonic() - dropped_at < GRACE_S + 1.0
    # Back within the grace period: no broadcast_ended, its media again.
    caster, _ = await join(client, "c", "broadcaster", "owner-secret", peer_secret=SECRET_A)
    await caster.send_json({"type": "publish", "media": media()})
    await receive_type(viewer, "media")
    cut(caster)
    await asyncio.sleep(GRACE_S / 3)
    caster, _ = await join(client, "c", "broadcaster", "owner-secret", peer_secret=SECRET_A)
    await caster.send_json({"type": "publish", "media": media()})
    await receive_type(viewer, "media")
    await expect_silence(viewer, GRACE_S + 0.5)
    await caster.close()
    await viewer.close()
