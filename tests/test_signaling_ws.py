"""The /ws contract end to end over real sockets (pytest-aiohttp): join, media, signals, peers,
status, peer_left, end and restart, ownership, token, heartbeat, shutdown."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from signaling_helpers import (
    expect_closed,
    expect_silence,
    join,
    make_client,
    media,
    receive,
    receive_type,
)

from signaling.app import start_server
from signaling.config import IceServer, ServerConfig


async def test_a_join_gets_at_most_the_candidates_it_wants(aiohttp_client: Any) -> None:
    """A rejoin asks for none (want_peers 0: its links are open); the server's own number is the
    most any join gets."""
    client = await make_client(aiohttp_client, welcome_peers=2)
    for _ in range(3):
        await join(client, "show")
    _rejoin, welcome = await join(client, "show", want_peers=0)
    assert welcome["peers"] == []
    _one, welcome = await join(client, "show", want_peers=1)
    assert len(welcome["peers"]) == 1
    _greedy, welcome = await join(client, "show", want_peers=50)
    assert len(welcome["peers"]) == 2


async def test_viewer_waits_then_gets_media_and_broadcaster_in_peers(aiohttp_client: Any) -> None:
    client = await make_client(aiohttp_client)
    early, welcome = await join(client, "show")
    assert welcome["v"] == 1 and welcome["channel"] == "show" and welcome["role"] == "viewer"
    assert welcome["media"] is None and welcome["peers"] == []
    assert welcome["heartbeat_s"] == 5.0 and welcome["ice_servers"] == []
    assert 1 <= len(welcome["peer_id"]) <= 32

    source, source_welcome = await join(client, "show", "broadcaster", secret="k")
    assert [p["peer_id"] for p in source_welcome["peers"]] == [welcome["peer_id"]]
    await source.send_json({"type": "publish", "media": media()})
    update = await receive(early)
    assert update == {"type": "media", "media": media()}
    await expect_silence(source)  # the broadcaster does not get its own media back

    _late, late_welcome = await join(client, "show", "relay")
    assert late_welcome["media"] == media()
    roles = {p["peer_id"]: p["role"] for p in late_welcome["peers"]}
    assert roles == {source_welcome["peer_id"]: "broadcaster", welcome["peer_id"]: "viewer"}
    assert all(p["latest_seq"] is None for p in late_welcome["peers"])


async def test_signal_round_trip_offer_answer_candidate(aiohttp_client: Any) -> None:
    client = await make_client(aiohttp_client)
    a, a_welcome = await join(client)
    b, b_welcome = await join(client)
    offer = {"kind": "offer", "sdp": "v=0\r\n..."}
    await a.send_json({"type": "signal", "to": b_welcome["peer_id"], "data": offer})
    assert await receive(b) == {"type": "signal", "from": a_welcome["peer_id"], "data": offer}
    candidate = {
        "kind": "candidate",
        "candidate": "candidate:1 1 UDP ...",
        "sdpMid": "0",
        "sdpMLineIndex": 0,
    }
    await b.send_json({"type": "signal", "to": a_welcome["peer_id"], "data": candidate})
    assert await receive(a) == {"type": "signal", "from": b_welcome["peer_id"], "data": candidate}


async def test_get_peers_excludes_self_and_listed(aiohttp_client: Any) -> None:
    client = await make_client(aiohttp_client)
    me, _welcome = await join(client)
    others = [(await join(client))[1]["peer_id"] for _ in range(5)]
    await me.send_json({"type": "get_peers", "count": 10, "exclude": others[:2]})
    reply = await receive(me)
    assert reply["type"] == "peers"
    assert {p["peer_id"] for p in reply["peers"]} == set(others[2:])


async def test_status_feeds_peers_and_peer_left_reaches_only_neighbours(
    aiohttp_client: Any,
) -> None:
    client = await make_client(aiohttp_client)
    watcher, _ = await join(client)
    bystander, _ = await join(client)
    leaver, leaver_welcome = await join(client)
    leaver_id = leaver_welcome["peer_id"]
    await leaver.send_json(
        {
            "type": "status",
            "neighbours": [],
            "upload_bps": 10,
            "spare_upload_bps": 5,
            "latest_seq": 12,
            "stats": {"buffer_s": 2.5},
        }
    )
    await leaver.send_json({"type": "ping"})  # one socket is ordered: status is applied
    assert await receive(leaver) == {"type": "pong"}
    await bystander.send_json({"type": "get_peers", "count": 5})
    peers = (await receive(bystander))["peers"]
    assert {"peer_id": leaver_id, "role": "viewer", "latest_seq": 12} in peers
    await watcher.send_json(
        {
            "type": "status",
            "neighbours": [leaver_id],
            "upload_bps": 0,
            "spare_upload_bps": None,
            "latest_seq": None,
            "stats": {},
        }
    )
    await watcher.send_json({"type": "get_peers", "count": 5})
    peers = (await receive(watcher))["peers"]
    assert leaver_id not in {p["peer_id"] for p in peers}  # already a neighbour
    await leaver.close()
    assert await receive(watcher) == {"type": "peer_left", "peer_id": leaver_id}
    await expect_silence(bystander)


async def test_end_then_broadcaster_left_then_restart(aiohttp_client: Any) -> None:
    client = await make_client(aiohttp_client)
    viewer, _ = await join(client, "live")
    source, _ = await join(client, "live", "broadcaster", secret="key")
    await source.send_json({"type": "publish", "media": media()})
    assert (await receive(viewer))["type"] == "media"
    await source.send_json({"type": "end"})
    assert await receive(viewer) == {"type": "broadcast_ended", "reason": "ended"}

    await source.send_json({"type": "publish", "media": media(bitrate_bps=2_000_000)})
    assert (await receive(viewer))["media"]["bitrate_bps"] == 2_000_000
    await source.close()
    assert await receive(viewer) == {"type": "broadcast_ended", "reason": "broadcaster_left"}

    # A thief cannot take the channel while it waits for its owner...
    thief, _ = await _join_raw(client, "live", "broadcaster", secret="guess")
    error = await expect_closed(thief)
    assert error["code"] == "channel_owned" and error["fatal"] is True
    # ...but the owner (same secret) restarts it and viewers get `media` again.
    restarted, welcome = await join(client, "live", "broadcaster", secret="key")
    assert welcome["media"] is None
    await restarted.send_json({"type": "publish", "media": media()})
    assert await receive(viewer) == {"type": "media", "media": media()}


async def test_same_secret_replaces_a_stale_broadcaster_socket(aiohttp_client: Any) -> None:
    client = await make_client(aiohttp_client)
    viewer, _ = await join(client, "c")
    old, _ = await join(client, "c", "broadcaster", secret="key")
    await old.send_json({"type": "publish", "media": media()})
    assert (await receive(viewer))["type"] == "media"
    new, _ = await join(client, "c", "broadcaster", secret="key")
    error = await expect_closed(old)
    assert error["code"] == "replaced"
    await new.send_json({"type": "publish", "media": media()})
    assert (await receive(viewer))["type"] == "media"
    resp = await client.get("/api/channels/c")
    assert (await resp.json())["state"] == "live"


async def test_broadcast_token_required_to_create(aiohttp_client: Any) -> None:
    client = await make_client(aiohttp_client, broadcast_token="letmein")
    for extra, code in (({}, "token_required"), ({"token": "wrong"}, "forbidden")):
        ws, _ = await _join_raw(client, "t", "broadcaster", secret="k", **extra)
        error = await expect_closed(ws)
        assert error["code"] == code and error["fatal"]
    _ok, welcome = await join(client, "t", "broadcaster", secret="k", token="letmein")
    assert welcome["role"] == "broadcaster"


async def test_ice_servers_are_handed_out(aiohttp_client: Any) -> None:
    servers = (
        IceServer(("stun:stun.example.org:3478",)),
        IceServer(("turn:turn.example.org:3478",), "user", "pass"),
    )
    client = await make_client(aiohttp_client, ice_servers=servers)
    _, welcome = await join(client)
    assert welcome["ice_servers"] == [
        {"urls": ["stun:stun.example.org:3478"]},
        {"urls": ["turn:turn.example.org:3478"], "username": "user", "credential": "pass"},
    ]


async def test_ping_pong(aiohttp_client: Any) -> None:
    client = await make_client(aiohttp_client)
    ws = await client.ws_connect("/ws")
    await ws.send_json({"type": "ping"})
    assert await receive(ws) == {"type": "pong"}


async def test_heartbeat_drops_a_dead_socket_and_tells_its_neighbours(aiohttp_client: Any) -> None:
    client = await make_client(aiohttp_client, heartbeat_s=0.3)
    alive, _ = await join(client)
    # A peer whose machine vanished: it never answers pings (autoping off, never reads).
    dead = await client.ws_connect("/ws", autoping=False)
    await dead.send_json({"type": "join", "v": 1, "channel": "demo", "role": "viewer"})
    dead_id = (await receive(dead))["peer_id"]
    await alive.send_json({"type": "status", "neighbours": [dead_id]})
    message = await receive_type(alive, "peer_left", timeout_s=3.0)
    assert message == {"type": "peer_left", "peer_id": dead_id}
    resp = await client.get("/api/channels/demo")
    assert resp.status == 200 and (await resp.json())["peers"] == 1


async def test_join_timeout_closes_idle_sockets(aiohttp_client: Any) -> None:
    client = await make_client(aiohttp_client, join_timeout_s=0.2)
    ws = await client.ws_connect("/ws")
    error = await expect_closed(ws)
    assert error["code"] == "join_timeout"


async def test_start_server_embeds_and_closes_sockets_on_shutdown() -> None:
    server = await start_server(ServerConfig(port=0))
    assert server.url.startswith("http://127.0.0.1:") and server.port > 0
    async with aiohttp.ClientSession() as session:
        async with session.get(server.url + "/healthz") as resp:
            assert (await resp.json())["status"] == "ok"
        ws = await session.ws_connect(server.url + "/ws")
        await ws.send_json({"type": "join", "v": 1, "channel": "c", "role": "viewer"})
        assert (await receive(ws))["type"] == "welcome"
        closer = asyncio.create_task(server.close())
        msg = await ws.receive(timeout=5)
        assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 1001  # going away
        await asyncio.wait_for(closer, 10)


async def _join_raw(
    client: Any, channel: str, role: str, **extra: Any
) -> tuple[aiohttp.ClientWebSocketResponse, None]:
    ws = await client.ws_connect("/ws")
    await ws.send_json({"type": "join", "v": 1, "channel": channel, "role": role, **extra})
    return ws, None
