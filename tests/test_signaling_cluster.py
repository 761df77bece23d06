"""A signaling cluster on a real redis-server: two servers (app instances in this loop, or a
`python -m signaling --redis` process) share channels, members, signals and figures."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from redis_helpers import running_redis, start_cluster_process
from signaling_helpers import (
    claim_once_lapsed,
    expect_closed,
    join,
    make_client,
    media,
    receive,
    receive_type,
)

from signaling.state import STATE

ROOT = Path(__file__).resolve().parent.parent
#: Fast beats so the tests wait tenths of a second, not seconds.
CLUSTER = {"cluster_heartbeat_s": 0.1, "cluster_liveness_s": 0.5}


async def wait_for(condition: Callable[[], Awaitable[bool]], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def two_servers(aiohttp_client: Any, redis_url: str, **overrides: Any) -> tuple[Any, Any]:
    a = await make_client(aiohttp_client, redis_url=redis_url, **CLUSTER, **overrides)
    b = await make_client(aiohttp_client, redis_url=redis_url, **CLUSTER, **overrides)
    return a, b


async def test_a_peer_on_a_is_offered_to_a_peer_on_b_with_the_media(
    aiohttp_client: Any, redis_url: str
) -> None:
    a, b = await two_servers(aiohttp_client, redis_url)
    source, _ = await join(a, "show", "broadcaster", secret="k")
    await source.send_json({"type": "publish", "media": media()})
    viewer_a, welcome_a = await join(a, "show")
    assert welcome_a["media"] == media()
    viewer_b, welcome_b = await join(b, "show")
    assert welcome_b["media"] == media()  # the claim's media, published on A
    offered = {p["peer_id"] for p in welcome_b["peers"]}
    assert welcome_a["peer_id"] in offered and len(offered) == 2  # A's viewer and broadcaster
    viewer_b2, _ = await join(b, "show")
    await viewer_b2.send_json({"type": "get_peers", "count": 8})
    peers = await receive_type(viewer_b2, "peers")
    assert welcome_a["peer_id"] in {p["peer_id"] for p in peers["peers"]}
    # A publish on A reaches B's viewers, an end too.
    await source.send_json({"type": "publish", "media": media(bitrate_bps=7)})
    assert (await receive_type(viewer_b, "media"))["media"]["bitrate_bps"] == 7
    await source.send_json({"type": "end"})
    assert (await receive_type(viewer_b, "broadcast_ended"))["reason"] == "ended"
    await viewer_a.close()


async def test_an_offer_from_a_reaches_b_and_the_answer_comes_back(
    aiohttp_client: Any, redis_url: str
) -> None:
    a, b = await two_servers(aiohttp_client, redis_url)
    offerer, welcome_a = await join(a, "talk")
    answerer, welcome_b = await join(b, "talk")
    await offerer.send_json(
        {"type": "signal", "to": welcome_b["peer_id"], "data": {"kind": "offer", "sdp": "o"}}
    )
    offer = await receive_type(answerer, "signal")
    assert offer == {
        "type": "signal",
        "from": welcome_a["peer_id"],
        "data": {"kind": "offer", "sdp": "o"},
    }
    await answerer.send_json(
        {"type": "signal", "to": welcome_a["peer_id"], "data": {"kind": "answer", "sdp": "a"}}
    )
    answer = await receive_type(offerer, "signal")
    assert answer["from"] == welcome_b["peer_id"] and answer["data"]["kind"] == "answer"
    assert b.app[STATE].metrics.value("signaling_signal_delivery_seconds_count") == 1
    # A peer of another channel is not reachable, wherever it is.
    other, welcome_other = await join(b, "elsewhere")
    await offerer.send_json({"type": "signal", "to": welcome_other["peer_id"], "data": {}})
    assert (await receive_type(offerer, "error"))["code"] == "unknown_peer"
    # When the answerer leaves, the offerer (a contact, on the other server) hears of it.
    await answerer.close()
    left = await receive_type(offerer, "peer_left")
    assert left["peer_id"] == welcome_b["peer_id"]
    # A late candidate for it is refused, though A still remembers where it was.
    await offerer.send_json({"type": "signal", "to": welcome_b["peer_id"], "data": {}})
    assert (await receive_type(offerer, "error"))["code"] == "unknown_peer"
    await other.close()


async def test_a_claim_on_a_holds_on_b(aiohttp_client: Any, redis_url: str) -> None:
    a, b = await two_servers(aiohttp_client, redis_url)
    source, _ = await join(a, "mine", "broadcaster", secret="right")
    await source.send_json({"type": "publish", "media": media()})
    await source.send_json({"type": "ping"})
    await receive_type(source, "pong")
    thief = await b.ws_connect("/ws")
    await thief.send_json({"type": "join", "channel": "mine", "role": "broadcaster", "secret": "x"})
    assert (await expect_closed(thief))["code"] == "channel_owned"
    # The owner restarting on B (same secret) takes over: A's old socket is told and closed.
    viewer_b, _ = await join(b, "mine")
    restarted, _ = await join(b, "mine", "broadcaster", secret="right")
    assert (await expect_closed(source))["code"] == "replaced"
    await restarted.send_json({"type": "publish", "media": media(bitrate_bps=3)})
    assert (await receive_type(viewer_b, "media"))["media"]["bitrate_bps"] == 3
    # Replaced again, on the same process: only the newest broadcaster is still a member.
    newest, newest_welcome = await join(b, "mine", "broadcaster", secret="right")
    assert (await expect_closed(restarted))["code"] == "replaced"
    viewer_a, welcome_a = await join(a, "mine")
    peers = {p["peer_id"] for p in welcome_a["peers"]}
    assert newest_welcome["peer_id"] in peers and len(peers) == 2  # it and viewer_b
    await viewer_a.close()
    await newest.close()


async def test_api_and_metrics_count_the_whole_cluster(aiohttp_client: Any, redis_url: str) -> None:
    a, b = await two_servers(aiohttp_client, redis_url)
    source, _ = await join(a, "big", "broadcaster", secret="k")
    await source.send_json({"type": "publish", "media": media(bitrate_bps=1_500_000)})
    sockets = [await join(a, "big") for _ in range(2)] + [await join(b, "big", "relay")]
    sockets += [await join(b, "big") for _ in range(3)]

    async def counted_everywhere() -> bool:
        for client in (a, b):
            listing = await (await client.get("/api/channels")).json()
            summary = listing["channels"][0] if listing["channels"] else {}
            if (summary.get("viewers"), summary.get("relays"), summary.get("peers")) != (5, 1, 7):
                return False
        return True

    await wait_for(counted_everywhere)
    detail = await (await b.get("/api/channels/big")).json()
    assert detail["state"] == "live" and detail["broadcaster"] is True
    assert detail["bitrate_bps"] == 1_500_000
    text = await (await b.get("/metrics")).text()
    assert 'signaling_peers{role="viewer"} 5.0' in text.splitlines()
    page = await (await b.get("/")).text()
    assert "big" in page
    for ws, _ in sockets:
        await ws.close()


@pytest.mark.slow
async def test_a_killed_process_drops_out_of_the_sample(
    aiohttp_client: Any, redis_url: str, procs: list[subprocess.Popen[str]]
) -> None:
    url = start_cluster_process(redis_url, procs)
    b = await make_client(aiohttp_client, redis_url=redis_url, **CLUSTER)
    async with aiohttp.ClientSession() as session:
        doomed = await session.ws_connect(url + "/ws")
        await doomed.send_json({"type": "join", "channel": "c", "role": "relay"})
        doomed_id = (await receive(doomed))["peer_id"]
        viewer, welcome = await join(b, "c")
        assert [p["peer_id"] for p in welcome["peers"]] == [doomed_id]
        procs[-1].kill()  # no goodbye: its heartbeats just stop
        killed_at = time.monotonic()

        async def gone() -> bool:
            await viewer.send_json({"type": "get_peers", "count": 8})
            return (await receive_type(viewer, "peers"))["peers"] == []

        await wait_for(gone, timeout_s=8.0)
        assert time.monotonic() - killed_at < 5.0  # its liveness (3 s) plus a beat
        listing = await (await b.get("/api/channels/c")).json()
        assert listing["relays"] == 0 and listing["viewers"] == 1


async def test_an_abandoned_claim_lapses_across_the_cluster(
    aiohttp_client: Any, redis_url: str
) -> None:
    a, b = await two_servers(aiohttp_client, redis_url, owner_ttl_s=0.3)
    owner, _ = await join(a, "show", "broadcaster", secret="mine")
    await owner.close()
    left_at = time.monotonic()
    await claim_once_lapsed(b, "show", since_s=left_at)


async def test_redis_going_away_is_an_error_for_the_client_not_a_crash(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    with running_redis(tmp_path) as server:
        client = await make_client(aiohttp_client, redis_url=server.url, **CLUSTER)
        viewer, welcome = await join(client, "c")
        other, other_welcome = await join(client, "c")
    # redis-server has stopped: a signal to a peer of this process still works, a join does not.
    await viewer.send_json({"type": "signal", "to": other_welcome["peer_id"], "data": {"x": 1}})
    assert (await receive_type(other, "signal"))["data"] == {"x": 1}
    refused = await client.ws_connect("/ws")
    await refused.send_json({"type": "join", "channel": "c", "role": "viewer"})
    assert (await expect_closed(refused, timeout_s=10.0))["code"] == "unavailable"
    await viewer.send_json({"type": "ping"})
    assert (await receive_type(viewer, "pong"))["type"] == "pong"
    assert welcome["peer_id"] in client.app[STATE].registry.peers


@pytest.mark.slow
def test_serve_with_an_unreachable_redis_exits_with_one_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "signaling", "--port", "0", "--redis", "redis://127.0.0.1:1/0"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode != 0
    assert "cannot use Redis at redis://127.0.0.1:1/0" in result.stderr
    assert "Traceback" not in result.stderr


async def test_status_reaches_the_other_processes_samples(
    aiohttp_client: Any, redis_url: str
) -> None:
    import redis.asyncio as aioredis

    a, b = await two_servers(aiohttp_client, redis_url)
    helper, welcome_a = await join(a, "s")
    viewer, _ = await join(b, "s")
    status = {"type": "status", "latest_seq": 42, "spare_upload_bps": 2_000_000}
    await helper.send_json(status)

    async def reported() -> bool:
        await viewer.send_json({"type": "get_peers", "count": 4})
        peers = (await receive_type(viewer, "peers"))["peers"]
        return [p["latest_seq"] for p in peers] == [42]

    await wait_for(reported)
    redis = aioredis.Redis.from_url(redis_url, decode_responses=True)
    assert await redis.smembers("sig:preferred:s") == {welcome_a["peer_id"]}  # spare upload
    await helper.send_json({**status, "spare_upload_bps": 0})

    async def demoted() -> bool:
        return not await redis.smembers("sig:preferred:s")

    await wait_for(demoted)
    await redis.aclose()


async def test_the_per_address_socket_cap_holds_for_the_cluster_together(
    aiohttp_client: Any, redis_url: str
) -> None:
    """A cap of 3 sockets per address is 3 across both processes, not 3 on each; a socket
    that closes on one frees a place on the other."""
    a, b = await two_servers(
        aiohttp_client, redis_url, limit_loopback=True, max_connections_per_ip=3
    )

    async def both_alive() -> bool:
        return all(len(s.app[STATE].directory.live_procs) == 2 for s in (a, b))

    await wait_for(both_alive)
    on_a = [(await join(a, "show"))[0] for _ in range(2)]
    on_b, _ = await join(b, "show")
    fourth = await b.ws_connect("/ws")
    error = await expect_closed(fourth)
    assert error["code"] == "too_many_connections" and "at most 3" in error["message"]
    assert len(b.app[STATE].connections) == 1  # refused before it was served

    await on_a[0].close()

    async def freed() -> bool:  # (and its count released in Redis: no disconnect pending)
        state = a.app[STATE]
        return len(state.connections) == 1 and not state.disconnects

    await wait_for(freed)
    again, welcome = await join(b, "show")  # the place freed on A is taken on B
    assert welcome["channel"] == "show"
    for ws in (on_a[1], on_b, again):
        await ws.close()


async def test_the_per_address_channel_cap_holds_for_the_cluster_together(
    aiohttp_client: Any, redis_url: str
) -> None:
    """A cap of 2 channels per address is 2 across both processes: a third channel is refused
    on either, a channel the address is in already is not, and a channel left on one process
    frees a place on the other; a process's counts go when it closes."""
    a, b = await two_servers(aiohttp_client, redis_url, limit_loopback=True, max_channels_per_ip=2)

    async def both_alive() -> bool:
        return all(len(s.app[STATE].directory.live_procs) == 2 for s in (a, b))

    await wait_for(both_alive)
    in_x, _ = await join(a, "x")
    in_y, _ = await join(b, "y")
    for server in (a, b):
        third = await server.ws_connect("/ws")
        await third.send_json({"type": "join", "channel": "z", "role": "viewer"})
        error = await expect_closed(third)
        assert error["code"] == "too_many_channels" and "at most 2" in error["message"]
    also_x, welcome = await join(b, "x")  # in x already (on A): no new channel
    assert welcome["channel"] == "x"

    await in_y.close()
    redis = b.app[STATE].directory.redis
    b_proc = b.app[STATE].directory.proc

    async def y_released() -> bool:
        return not await redis.hexists(f"sig:proc:{b_proc}:chans:127.0.0.1", "y")

    await wait_for(y_released)
    in_z, welcome = await join(a, "z")  # the place y held on B is taken on A
    assert welcome["channel"] == "z"
    for ws in (in_x, also_x, in_z):
        await ws.close()

    async def counts_gone() -> bool:
        counts = await redis.keys("sig:proc:*:chans:*")
        return not counts and not await redis.keys("sig:proc:*:chanaddrs")

    await wait_for(counts_gone)


@pytest.mark.slow
async def test_a_killed_process_s_channel_counts_go_with_it(
    aiohttp_client: Any, redis_url: str, procs: list[subprocess.Popen[str]]
) -> None:
    """An address in one channel (cap 1) on a process that dies is free to join another once
    the process is gone, and the dead process's counts leave Redis with its other records."""
    caps = ("--limit-loopback", "--max-channels-per-ip", "1")
    url = start_cluster_process(redis_url, procs, *caps)
    b = await make_client(
        aiohttp_client, redis_url=redis_url, limit_loopback=True, max_channels_per_ip=1, **CLUSTER
    )
    redis = b.app[STATE].directory.redis
    async with aiohttp.ClientSession() as session:
        doomed = await session.ws_connect(url + "/ws")
        await doomed.send_json({"type": "join", "channel": "c", "role": "viewer"})
        assert (await receive(doomed))["type"] == "welcome"

        async def both_alive() -> bool:
            return len(b.app[STATE].directory.live_procs) == 2

        await wait_for(both_alive)
        refused = await b.ws_connect("/ws")
        await refused.send_json({"type": "join", "channel": "d", "role": "viewer"})
        error = await expect_closed(refused)
        assert error["code"] == "too_many_channels"
        assert await redis.keys("sig:proc:*:chans:*")
        procs[-1].kill()

        async def cleaned_up() -> bool:
            return not await redis.keys("sig:proc:*:chans:*")

        await wait_for(cleaned_up, timeout_s=8.0)
        viewer, welcome = await join(b, "d")
        assert welcome["channel"] == "d"
        await viewer.close()


async def test_a_beat_after_every_dirty_peer_left_still_beats(
    aiohttp_client: Any, redis_url: str
) -> None:
    """A peer that sent a status and left before the next beat leaves its channel's pending
    status list empty; the beat skips it (an empty HSET used to fail the whole beat, so the
    process did not state it was alive)."""
    server = await make_client(aiohttp_client, redis_url=redis_url, **CLUSTER)
    directory = server.app[STATE].directory
    viewer, _ = await join(server, "c")
    await viewer.send_json({"type": "status", "latest_seq": 3, "neighbours": 1})
    await viewer.close()

    async def left() -> bool:
        return not server.app[STATE].by_peer

    await wait_for(left)
    directory._dirty.setdefault("c", {})  # (its status popped again: an empty list for "c")
    before = await directory.redis.zscore("sig:procs", directory.proc)
    await directory._beat()
    assert await directory.redis.zscore("sig:procs", directory.proc) > before
