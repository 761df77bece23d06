"""Hostile clients: each bad input gets an error to its sender only (or a disconnection), and a
bystander pair in the same channel keeps exchanging signals, unaffected."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest
from signaling_helpers import expect_closed, expect_silence, join, make_client, media, receive

from signaling.protocol import Limits
from signaling.state import STATE


async def assert_bystanders_fine(client: Any) -> None:
    """Two fresh peers in the hostile client's channel can still join and talk."""
    a, a_welcome = await join(client)
    b, b_welcome = await join(client)
    await a.send_json({"type": "signal", "to": b_welcome["peer_id"], "data": {"kind": "offer"}})
    assert await receive(b) == {
        "type": "signal",
        "from": a_welcome["peer_id"],
        "data": {"kind": "offer"},
    }
    await a.close()
    await b.close()


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("{{{{", "bad_json"),
        ("[" * 50_000, "bad_json"),
        ('"just a string"', "invalid_message"),
        ('{"type": "teleport"}', "unknown_type"),
        ('{"type": "signal", "to": 1}', "invalid_message"),
        ('{"type": "join", "v": 1, "channel": "demo", "role": "viewer"}', "already_joined"),
        ('{"type": "signal", "to": "nobody", "data": {}}', "unknown_peer"),
        ('{"type": "publish", "media": {}}', "invalid_message"),
        ('{"type": "end"}', "forbidden"),
        ('{"type": "status", "neighbours": "everyone"}', "invalid_message"),
    ],
)
async def test_bad_message_gets_non_fatal_error_to_sender_only(
    aiohttp_client: Any, frame: str, code: str
) -> None:
    client = await make_client(aiohttp_client)
    neighbour, _ = await join(client)
    hostile, _ = await join(client)
    await hostile.send_str(frame)
    error = await receive(hostile)
    assert error["type"] == "error" and error["code"] == code and error["fatal"] is False
    await expect_silence(neighbour)
    await hostile.send_json({"type": "ping"})  # still connected and served
    assert await receive(hostile) == {"type": "pong"}
    await assert_bystanders_fine(client)
    metrics = await (await client.get("/metrics")).text()
    assert f'signaling_errors_total{{code="{code}"}} 1.0' in metrics


async def test_messages_before_join_are_refused(aiohttp_client: Any) -> None:
    client = await make_client(aiohttp_client)
    ws = await client.ws_connect("/ws")
    for message in ({"type": "get_peers", "count": 2}, {"type": "publish", "media": media()}):
        await ws.send_json(message)
        assert (await receive(ws))["code"] == "not_joined"


async def test_binary_frame_refused(aiohttp_client: Any) -> None:
    client = await make_client(aiohttp_client)
    ws, _ = await join(client)
    await ws.send_bytes(b"\x00\x01binary")
    assert (await receive(ws))["code"] == "invalid_message"


async def test_cross_channel_signal_refused(aiohttp_client: Any) -> None:
    client = await make_client(aiohttp_client)
    victim, victim_welcome = await join(client, "other")
    attacker, _ = await join(client, "demo")
    await attacker.send_json({"type": "signal", "to": victim_welcome["peer_id"], "data": {}})
    assert (await receive(attacker))["code"] == "unknown_peer"
    await expect_silence(victim)


async def test_viewer_cannot_publish(aiohttp_client: Any) -> None:
    client = await make_client(aiohttp_client)
    other, _ = await join(client)
    viewer, _ = await join(client)
    await viewer.send_json({"type": "publish", "media": media()})
    assert (await receive(viewer))["code"] == "forbidden"
    await expect_silence(other)


async def test_oversized_message_non_fatal_then_over_frame_cap_closes(aiohttp_client: Any) -> None:
    client = await make_client(aiohttp_client)
    hostile, _ = await join(client)
    _, target = await join(client)
    big = {"type": "signal", "to": target["peer_id"], "data": {"sdp": "x" * 100_000}}
    await hostile.send_json(big)
    error = await receive(hostile)
    assert error["code"] == "too_large" and not error["fatal"]
    await hostile.send_str("x" * (300 * 1024))  # over aiohttp's max_msg_size: socket closed
    msg = await hostile.receive(timeout=3)
    assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 1009
    await assert_bystanders_fine(client)


async def test_the_configured_limits_are_the_ones_enforced(aiohttp_client: Any) -> None:
    """ServerConfig.limits reaches the parser: a signal the default caps let through is refused
    by a server configured with a smaller one."""
    client = await make_client(aiohttp_client, limits=Limits(max_signal_data_bytes=1024))
    hostile, _ = await join(client)
    receiver, target = await join(client)
    small = {"type": "signal", "to": target["peer_id"], "data": {"sdp": "x" * 500}}
    await hostile.send_json(small)
    assert (await receive(receiver))["type"] == "signal"
    await hostile.send_json({**small, "data": {"sdp": "x" * 2000}})
    error = await receive(hostile)
    assert error["code"] == "too_large" and not error["fatal"]
    await expect_silence(receiver)


async def test_flood_is_rate_limited_then_dropped(aiohttp_client: Any) -> None:
    client = await make_client(
        aiohttp_client, rate_msgs_per_s=5.0, rate_burst_msgs=10.0, max_rate_violations=20
    )
    hostile, _ = await join(client)
    for _ in range(40):
        await hostile.send_json({"type": "ping"})
    codes = []
    while True:
        msg = await hostile.receive(timeout=3)
        if msg.type != aiohttp.WSMsgType.TEXT:
            break
        data = json.loads(msg.data)
        codes.append(data.get("code", data["type"]))
    assert codes[:9] == ["pong"] * 9  # the burst (the join spent one token)
    assert codes[9:] == ["rate_limited"] * 20  # then refusals, the last one fatal: dropped
    await assert_bystanders_fine(client)


async def test_rate_limit_recovers_for_a_polite_client(aiohttp_client: Any) -> None:
    client = await make_client(aiohttp_client, rate_msgs_per_s=20.0, rate_burst_msgs=3.0)
    ws, _ = await join(client)
    for _ in range(3):
        await ws.send_json({"type": "ping"})
    replies = [await receive(ws) for _ in range(3)]
    assert [r.get("code", r["type"]) for r in replies] == ["pong", "pong", "rate_limited"]
    await asyncio.sleep(0.2)
    await ws.send_json({"type": "ping"})
    assert await receive(ws) == {"type": "pong"}


async def test_channel_full_and_bad_name_are_fatal(aiohttp_client: Any) -> None:
    client = await make_client(aiohttp_client, max_peers_per_channel=2)
    await join(client)
    await join(client)
    for channel, code in (("demo", "channel_full"), ("no spaces", "bad_channel_name")):
        ws = await client.ws_connect("/ws")
        await ws.send_json({"type": "join", "v": 1, "channel": channel, "role": "viewer"})
        error = await expect_closed(ws)
        assert error["code"] == code and error["fatal"]
    _, welcome = await join(client, "elsewhere")  # other channels still open
    assert welcome["channel"] == "elsewhere"


async def test_channel_count_is_capped(aiohttp_client: Any) -> None:
    client = await make_client(aiohttp_client, max_channels=1, max_waiting_channels=3)
    for i in range(3):
        await join(client, f"c{i}")
    ws = await client.ws_connect("/ws")
    await ws.send_json({"type": "join", "v": 1, "channel": "c3", "role": "viewer"})
    assert (await expect_closed(ws))["code"] == "server_full"
    assert len(client.app[STATE].registry.channels) == 3
    await join(client, "real", "broadcaster", secret="k")  # waiting rooms never keep it out
    ws = await client.ws_connect("/ws")
    await ws.send_json({"type": "join", "channel": "c4", "role": "broadcaster", "secret": "x"})
    assert (await expect_closed(ws))["code"] == "server_full"  # the owned channels' own cap


async def test_slow_reader_is_dropped_without_blocking_others(aiohttp_client: Any) -> None:
    client = await make_client(
        aiohttp_client,
        send_queue_max_bytes=512 * 1024,
        rate_bytes_per_s=1e9,
        rate_burst_bytes=1e9,
        rate_msgs_per_s=1e6,
        rate_burst_msgs=1e6,
    )
    source, _ = await join(client, "c", "broadcaster", secret="k")
    reader, _ = await join(client, "c")
    # The slow peer: a raw socket that joins and then never reads again.
    host, port = client.server.host, client.server.port
    _sock_reader, sock_writer = await asyncio.open_connection(host, port)
    sock_writer.transport.get_extra_info("socket").setsockopt(
        __import__("socket").SOL_SOCKET, __import__("socket").SO_RCVBUF, 4096
    )
    sock_writer.write(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    sock_writer.write(_masked_text_frame(b'{"type":"join","v":1,"channel":"c","role":"viewer"}'))
    await sock_writer.drain()
    state = client.app[STATE]
    for _ in range(100):
        await asyncio.sleep(0.01)
        if state.registry.channels["c"].role_counts["viewer"] == 2:
            break
    big_media = media(init_segment="A" * 80_000)
    received = 0
    for _ in range(120):  # ~10 MB towards the slow peer, far beyond its socket buffers
        await source.send_json({"type": "publish", "media": big_media})
        assert (await receive(reader))["type"] == "media"  # the healthy peer keeps up
        received += 1
    assert received == 120
    assert state.metrics.value("signaling_dropped_slow_total") == 1
    assert state.registry.channels["c"].role_counts["viewer"] == 1
    sock_writer.close()


def _masked_text_frame(payload: bytes) -> bytes:
    """A client->server WebSocket text frame (clients must mask; the mask here is zeros)."""
    assert len(payload) < 126
    return bytes([0x81, 0x80 | len(payload)]) + b"\x00\x00\x00\x00" + payload
