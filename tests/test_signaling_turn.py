"""`serve --turn-secret`: each welcome carries fresh per-peer TURN credentials, refreshed before
they expire, and the secret itself never reaches a page, /api, /metrics or any message."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
from pathlib import Path
from typing import Any

import pytest
from signaling_helpers import join, make_client, media, receive, receive_type
from test_e2e_swarm import one_line_error, start_broadcast, stop, streamer

from signaling.app import start_server
from signaling.config import IceServer, ServerConfig
from signaling.state import STATE
from streamer.transport.rtc import dispatch_signaling_event
from streamer.transport.signaling_client import IceServersUpdate, SignalingClient

SECRET = "s3cret-never-sent"
NOW_UNIX_S = 1_800_000_000.0
SERVERS = (
    IceServer(("stun:127.0.0.1:3478",)),
    IceServer(("turn:127.0.0.1:3478",), secret_auth=True),
)


def expected_credential(username: str) -> str:
    mac = hmac.new(SECRET.encode(), username.encode(), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode()


async def turn_client(aiohttp_client: Any, **overrides: Any) -> Any:
    client = await make_client(
        aiohttp_client, ice_servers=SERVERS, turn_secret=SECRET, turn_ttl_s=3600.0, **overrides
    )
    client.server.app[STATE].wall_clock = lambda: NOW_UNIX_S
    return client


async def test_welcome_carries_credentials_for_that_peer(aiohttp_client: Any) -> None:
    client = await turn_client(aiohttp_client)
    _, a = await join(client)
    _, b = await join(client, role="relay")
    for welcome in (a, b):
        stun, turn = welcome["ice_servers"]
        assert stun == {"urls": ["stun:127.0.0.1:3478"]}
        assert turn["urls"] == ["turn:127.0.0.1:3478"]
        assert turn["username"] == f"{int(NOW_UNIX_S) + 3600}:{welcome['peer_id']}"
        assert turn["credential"] == expected_credential(turn["username"])
    assert a["ice_servers"][1]["credential"] != b["ice_servers"][1]["credential"]


async def test_a_reconnect_gets_fresh_credentials(aiohttp_client: Any) -> None:
    client = await turn_client(aiohttp_client)
    ws, first = await join(client)
    await ws.close()
    client.server.app[STATE].wall_clock = lambda: NOW_UNIX_S + 100
    _, second = await join(client)
    username = second["ice_servers"][1]["username"]
    assert username == f"{int(NOW_UNIX_S) + 3700}:{second['peer_id']}"
    assert username != first["ice_servers"][1]["username"]


async def test_the_secret_never_leaves_the_server(aiohttp_client: Any) -> None:
    client = await turn_client(aiohttp_client)
    source, source_welcome = await join(client, "show", "broadcaster", secret="owner-key")
    await source.send_json({"type": "publish", "media": media()})
    viewer, welcome = await join(client, "show")
    await viewer.send_json({"type": "signal", "to": source_welcome["peer_id"], "data": {"k": 1}})
    seen: dict[str, str] = {"welcomes": repr([source_welcome, welcome])}
    seen["signal"] = repr(await receive_type(source, "signal"))
    for path in ("/", "/watch/show", "/api/channels", "/api/channels/show", "/metrics", "/healthz"):
        resp = await client.get(path)
        assert resp.status == 200, path
        seen[path] = await resp.text()
    # Per-peer credentials come with the welcome only; the page lists the STUN server.
    assert "stun:127.0.0.1:3478" in seen["/watch/show"]
    assert "turn:127.0.0.1:3478" not in seen["/watch/show"]
    for text in seen.values():
        assert SECRET not in text
        assert base64.b64encode(SECRET.encode()).decode() not in text


async def test_credentials_are_refreshed_before_they_expire(aiohttp_client: Any) -> None:
    client = await turn_client(aiohttp_client, sweep_interval_s=0.05)
    ws, welcome = await join(client)
    state = client.server.app[STATE]
    state.wall_clock = lambda: NOW_UNIX_S + 1000  # less than half the lifetime gone: nothing
    await ws.send_json({"type": "ping"})
    assert await receive(ws) == {"type": "pong"}
    state.wall_clock = lambda: NOW_UNIX_S + 1900  # past half of 3600 s
    update = await receive_type(ws, "ice_servers")
    turn = update["ice_servers"][1]
    assert turn["username"] == f"{int(NOW_UNIX_S) + 1900 + 3600}:{welcome['peer_id']}"
    assert turn["credential"] == expected_credential(turn["username"])
    assert SECRET not in repr(update)


async def test_without_a_secret_nothing_changes(aiohttp_client: Any) -> None:
    client = await make_client(aiohttp_client, ice_servers=(IceServer(("stun:h:1",)),))
    _, welcome = await join(client)
    assert welcome["ice_servers"] == [{"urls": ["stun:h:1"]}]


async def test_a_peer_takes_the_refreshed_servers() -> None:
    config = ServerConfig(
        port=0, ice_servers=SERVERS, turn_secret=SECRET, turn_ttl_s=3600.0, sweep_interval_s=0.05
    )
    server = await start_server(config)
    client = SignalingClient(server.url, channel="c", role="relay", reconnect=False)
    try:
        welcome = await client.connect()
        manager = FakeManager()
        server.app[STATE].wall_clock = lambda: time.time() + 1900
        async with asyncio.timeout(3):
            while True:
                event = await client.next_event()
                if dispatch_signaling_event(manager, event):  # type: ignore[arg-type]
                    break
        assert isinstance(event, IceServersUpdate)
        [(stun, turn)] = manager.updates
        assert stun.urls == ("stun:127.0.0.1:3478",) and stun.username is None
        assert turn.username != welcome.ice_servers[1].username
        assert turn.username is not None and turn.username.endswith(f":{welcome.peer_id}")
        assert turn.credential == expected_credential(turn.username)
    finally:
        await client.close()
        await server.close()


class FakeManager:
    """Records what `dispatch_signaling_event` hands a PeerManager."""

    def __init__(self) -> None:
        self.updates: list[tuple[Any, ...]] = []

    def set_ice_servers(self, servers: Any) -> None:
        self.updates.append(tuple(servers))


@pytest.mark.timeout(60)
async def test_broadcast_hands_its_embedded_servers_turn_settings_out(tmp_path: Path) -> None:
    secret_file = tmp_path / "turn-secret"
    secret_file.write_text(SECRET + "\n")
    turn_options = ("--turn-url", "turn:127.0.0.1:3478", "--turn-secret-file", str(secret_file))
    proc, url = start_broadcast(tmp_path, tmp_path / "k.key", *turn_options)
    try:
        client = SignalingClient(url, channel="x", role="viewer", reconnect=False)
        welcome = await client.connect()
        await client.close()
    finally:
        _, err = stop(proc)  # SIGTERM may come before its handlers are installed: any exit code
    assert "Traceback" not in err, err
    [turn] = welcome.ice_servers
    assert turn.username is not None and turn.username.endswith(f":{welcome.peer_id}")
    assert turn.credential == expected_credential(turn.username)
    # With --server the settings belong to `streamer serve`: refused, in one line.
    line = one_line_error(
        streamer(
            "broadcast", "testsrc", "--server", url, "--key", str(tmp_path / "k"), *turn_options
        )
    )
    assert "streamer serve" in line
