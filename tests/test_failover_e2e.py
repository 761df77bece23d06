"""Failover with real processes on loopback: `python -m signaling --redis` processes killed with
SIGKILL under clients that know the others (`--server` given more than once), and a swarm of
real nodes across a server restart (the old bug: survivors linked twice to peers that came back
under new ids, `[bcast, w1, w1, w2, w5, w5]`)."""

from __future__ import annotations

import random
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from redis_helpers import RedisServer, start_cluster_process
from signaling_helpers import expect_silence, receive, receive_type
from test_node_swarm import broadcast, viewer
from waiting import wait_until

from signaling.app import start_server
from signaling.config import ServerConfig
from streamer.cli import build_parser
from streamer.commands.relay import node_config
from streamer.transport.signaling_client import (
    Disconnected,
    Reconnected,
    SignalingClient,
    SignalMessage,
    websocket_url,
)

ROOT = Path(__file__).resolve().parent.parent
GRACE_S = 1.0
#: A killed process counts as dead after its liveness (3 s) and is cleaned up at the next beat.
DEAD_AFTER_S = 4.5


def serve(redis_url: str, procs: list[subprocess.Popen[str]]) -> str:
    """One cluster process on a free port; returns its base URL."""
    return start_cluster_process(redis_url, procs, "--peer-grace", str(GRACE_S))


def client_trying_first(first: str, second: str, **kwargs: Any) -> SignalingClient:
    """A client of both servers whose shuffled order happens to start with `first`."""
    for seed in range(100):
        client = SignalingClient([first, second], rng=random.Random(seed), **kwargs)
        if client.url == websocket_url(first):
            return client
    raise AssertionError("no seed puts the first server first")


async def next_of(client: SignalingClient, kind: type, timeout_s: float) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        event = await client.next_event(max(0.01, deadline - time.monotonic()))
        if isinstance(event, kind):
            return event


def test_every_node_command_takes_several_servers() -> None:
    parser = build_parser()
    for command in ("watch", "relay"):
        args = parser.parse_args(
            [command, "--server", "http://a:1", "--server", "http://b:2", "--channel", "x"]
        )
        config = node_config(args, "viewer", target_neighbours=4)
        assert config.server_urls == ("http://a:1", "http://b:2")
    args = parser.parse_args(["broadcast", "in.mp4", "--server", "http://a:1", "--server", "b"])
    assert args.server == ["http://a:1", "b"]
    args = parser.parse_args(["loadgen", "--server", "http://a:1", "--server", "http://b:2"])
    assert args.server == ["http://a:1", "http://b:2"]


@pytest.mark.slow
async def test_a_killed_server_s_peers_fail_over_keep_their_ids_and_the_dead_are_told(
    redis_server: RedisServer, procs: list[subprocess.Popen[str]]
) -> None:
    url_a = serve(redis_server.url, procs)
    url_b = serve(redis_server.url, procs)
    mover = client_trying_first(url_a, url_b, channel="c", role="viewer", backoff_initial_s=0.2)
    welcome = await mover.connect()
    async with aiohttp.ClientSession() as session:
        # A peer of A without a second server: when A dies, it is gone for good.
        doomed = await session.ws_connect(url_a + "/ws")
        await doomed.send_json(
            {"type": "join", "channel": "c", "role": "viewer", "peer_secret": "d" * 24}
        )
        doomed_id = (await receive(doomed))["peer_id"]
        watcher = await session.ws_connect(url_b + "/ws")
        await watcher.send_json({"type": "join", "channel": "c", "role": "relay"})
        await receive_type(watcher, "welcome")
        neighbours = [welcome.peer_id, doomed_id]
        await watcher.send_json({"type": "status", "neighbours": neighbours, "upload_bps": 0})

        procs[0].kill()
        killed_at = time.monotonic()
        await next_of(mover, Disconnected, timeout_s=3)
        back = await next_of(mover, Reconnected, timeout_s=10)
        back_after_s = time.monotonic() - killed_at
        assert back.welcome.peer_id == welcome.peer_id and not back.id_changed
        assert mover.url == websocket_url(url_b)
        assert back_after_s < 5.0, back_after_s

        # The watcher hears of the doomed peer (after A is found dead and the grace period),
        # and never of the one that moved.
        before: list[dict[str, Any]] = []
        while (message := await receive(watcher, DEAD_AFTER_S + GRACE_S + 3))["type"] != (
            "peer_left"
        ):
            before.append(message)
        told_after_s = time.monotonic() - killed_at
        assert message["peer_id"] == doomed_id, message
        assert GRACE_S <= told_after_s < DEAD_AFTER_S + GRACE_S + 2, told_after_s
        assert not [m for m in before if m["type"] == "peer_left"]
        # Signals find the moved peer on its new process.
        await watcher.send_json({"type": "signal", "to": welcome.peer_id, "data": {"k": 1}})
        signal = await next_of(mover, SignalMessage, timeout_s=3)
        assert signal.data == {"k": 1}
        await expect_silence(watcher, GRACE_S + 0.5)
        await watcher.close()
        await doomed.close()
    await mover.close()


@pytest.mark.slow
async def test_no_second_link_to_a_peer_after_a_server_restart() -> None:
    """Every node keeps its id across the restart, so nobody links twice to the same node."""
    async with broadcast() as cast:
        nodes = [viewer(cast.server) for _ in range(3)]
        for node in nodes:
            await node.start()
        everyone = [cast.node, *nodes]
        await wait_until(
            lambda: all(len(n.played) >= 2 for n in nodes), 20, "the viewers play before"
        )
        ids_before = [n.client.peer_id for n in everyone]
        port = cast.server.port
        await cast.server.close()
        cast.server = await start_server(ServerConfig(host="127.0.0.1", port=port))
        await wait_until(
            lambda: all(n.client.reconnects > 0 for n in everyone), 15, "all back on the server"
        )
        played = [len(n.played) for n in nodes]
        # Long enough for statuses, get_peers and any new link to settle (4 chunks of 0.5 s).
        await wait_until(
            lambda: all(len(n.played) >= p + 4 for n, p in zip(nodes, played, strict=True)),
            20,
            "the viewers play on after the restart",
        )
        ids_after = [n.client.peer_id for n in everyone]
        links = {n.client.peer_id: sorted(n.manager.open_peers()) for n in everyone if n.manager}
        for node in nodes:
            await node.close()
    live = set(ids_after)
    for peer_id, open_ids in links.items():
        # A link under an id no node has any more is a second link to a node that came back.
        assert set(open_ids) <= live - {peer_id}, (peer_id, open_ids, live)
    assert ids_after == ids_before
