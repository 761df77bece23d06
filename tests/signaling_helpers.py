"""Helpers for the signaling tests: a server per test, joined clients, receive with a deadline."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from dataclasses import replace
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient

from signaling.app import create_app
from signaling.config import ServerConfig

RECEIVE_TIMEOUT_S = 3.0

TEST_CONFIG = ServerConfig(port=0, heartbeat_s=5.0, sweep_interval_s=3600.0)


def media(**overrides: Any) -> dict[str, Any]:
    """A valid MEDIA object (the init segment is just bytes: the server does not parse MP4)."""
    value: dict[str, Any] = {
        "mime_type": 'video/mp4; codecs="avc1.42C01E, mp4a.40.2"',
        "chunk_seconds": 1.0,
        "init_segment": base64.b64encode(b"\x00\x00\x00\x18ftypiso6" + bytes(1200)).decode(),
        "public_key": base64.b64encode(bytes(range(32))).decode(),
        "bitrate_bps": 1_000_000,
    }
    value.update(overrides)
    return value


async def make_client(aiohttp_client: Any, **overrides: Any) -> TestClient[Any, Any]:
    client: TestClient[Any, Any] = await aiohttp_client(
        create_app(replace(TEST_CONFIG, **overrides))
    )
    return client


async def receive(ws: aiohttp.ClientWebSocketResponse, timeout_s: float = RECEIVE_TIMEOUT_S) -> Any:
    """The next JSON message; fails the test on close or timeout."""
    msg = await ws.receive(timeout=timeout_s)
    assert msg.type == aiohttp.WSMsgType.TEXT, f"expected a text message, got {msg.type} {msg.data}"
    return json.loads(msg.data)


async def receive_type(
    ws: aiohttp.ClientWebSocketResponse, message_type: str, timeout_s: float = RECEIVE_TIMEOUT_S
) -> Any:
    """Skip other messages until one of `message_type` arrives."""
    while True:
        message = await receive(ws, timeout_s)
        if message["type"] == message_type:
            return message


async def expect_silence(ws: aiohttp.ClientWebSocketResponse, wait_s: float = 0.2) -> None:
    """Nothing arrives for `wait_s` (proves a message did NOT reach this client)."""
    try:
        msg = await ws.receive(timeout=wait_s)
    except TimeoutError:
        return
    raise AssertionError(f"unexpected message: {msg.type} {msg.data!r}")


async def expect_closed(ws: aiohttp.ClientWebSocketResponse, timeout_s: float = 3.0) -> Any:
    """Read until the server closes; returns the last error message seen (or None)."""
    last_error = None
    while True:
        msg = await ws.receive(timeout=timeout_s)
        if msg.type == aiohttp.WSMsgType.TEXT:
            data = json.loads(msg.data)
            if data["type"] == "error":
                last_error = data
            continue
        assert msg.type in (
            aiohttp.WSMsgType.CLOSE,
            aiohttp.WSMsgType.CLOSING,
            aiohttp.WSMsgType.CLOSED,
            aiohttp.WSMsgType.ERROR,
        ), msg
        return last_error


async def join(
    client: TestClient[Any, Any],
    channel: str = "demo",
    role: str = "viewer",
    secret: str | None = None,
    **extra: Any,
) -> tuple[aiohttp.ClientWebSocketResponse, dict[str, Any]]:
    """Open /ws, join, and return the socket with its welcome."""
    ws = await client.ws_connect("/ws")
    message: dict[str, Any] = {"type": "join", "v": 1, "channel": channel, "role": role}
    if secret is not None:
        message["secret"] = secret
    message.update(extra)
    await ws.send_json(message)
    welcome = await receive(ws)
    assert welcome["type"] == "welcome", welcome
    return ws, welcome


async def claim_once_lapsed(
    client: TestClient[Any, Any], channel: str, since_s: float
) -> aiohttp.ClientWebSocketResponse:
    """Claim `channel` with another secret, retrying while it is still its owner's: a claim its
    owner abandoned at since_s (time.monotonic()) lapses within 0.3-3 s (the tests'
    owner_ttl_s), and not sooner."""
    while True:
        ws = await client.ws_connect("/ws")
        await ws.send_json(
            {"type": "join", "channel": channel, "role": "broadcaster", "secret": "y"}
        )
        reply = await receive(ws)
        if reply["type"] == "welcome":
            break
        assert reply["code"] == "channel_owned"
        assert time.monotonic() - since_s < 3.0
        await ws.close()
        await asyncio.sleep(0.05)
    assert time.monotonic() - since_s >= 0.3
    return ws
