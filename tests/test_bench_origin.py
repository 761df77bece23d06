"""The client-server baseline over real sockets on 127.0.0.1: the origin's answers to good and
hostile requests, and HTTP viewers playing by the swarm's playout rules."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest

from streamer.bench.http_viewer import HttpViewer
from streamer.bench.origin import Origin
from streamer.swarm.config import SwarmConfig

CHUNK_S = 0.2
CHUNK_BYTES = 20_000


@pytest.fixture
async def origin() -> AsyncIterator[Origin]:
    server = Origin(b"INIT" * 100, CHUNK_S, wait_s=2.0)
    await server.start()
    yield server
    await server.close()


async def _release_forever(origin: Origin, first_seq: int = 0) -> None:
    seq = first_seq
    while True:
        origin.release(seq, seq * CHUNK_S, CHUNK_S, bytes([seq % 256]) * CHUNK_BYTES)
        seq += 1
        await asyncio.sleep(CHUNK_S)


async def test_origin_serves_released_chunks_and_long_polls_the_next(origin: Origin) -> None:
    origin.release(0, 0.0, CHUNK_S, b"a" * 1000)
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{origin.url}/live") as r:
            assert r.status == 200 and (await r.json())["newest_seq"] == 0
        async with session.get(f"{origin.url}/chunk/0") as r:
            assert r.status == 200 and await r.read() == b"a" * 1000
            assert float(r.headers["X-Media-Start-S"]) == 0.0
        pending = asyncio.ensure_future(session.get(f"{origin.url}/chunk/1"))
        await asyncio.sleep(0.1)
        assert not pending.done()  # waits for the release
        origin.release(1, CHUNK_S, CHUNK_S, b"b" * 500)
        async with await pending as r:
            assert r.status == 200 and await r.read() == b"b" * 500
    assert origin.window.stream_bytes == 1500
    assert origin.bytes_sent >= 1500


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/chunk/abc", 400),
        ("/chunk/-1", 400),
        ("/chunk/99999999999999999999", 400),
        ("/chunk/500", 404),  # far beyond the live edge
        ("/nope", 404),
    ],
)
async def test_origin_refuses_bad_requests_with_a_status(
    origin: Origin, path: str, status: int
) -> None:
    origin.release(0, 0.0, CHUNK_S, b"x")
    async with aiohttp.ClientSession() as session, session.get(origin.url + path) as r:
        assert r.status == status
    # ...and keeps serving everyone else.
    async with aiohttp.ClientSession() as session, session.get(f"{origin.url}/chunk/0") as r:
        assert r.status == 200


async def test_origin_answers_gone_for_evicted_chunks_and_timeout_for_late_ones(
    origin: Origin,
) -> None:
    for seq in range(40):
        origin.release(seq, seq * CHUNK_S, CHUNK_S, b"x")
    origin.wait_s = 0.2
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{origin.url}/chunk/0") as r:
            assert r.status == 410
        async with session.get(f"{origin.url}/chunk/41") as r:
            assert r.status == 504


async def test_http_viewers_play_continuously_and_the_origin_sends_one_copy_each(
    origin: Origin,
) -> None:
    releaser = asyncio.create_task(_release_forever(origin))
    config = SwarmConfig(chunk_duration_s=CHUNK_S, target_lag_s=0.5)
    viewers = [HttpViewer(origin.url, 3.0, config) for _ in range(3)]
    try:
        async with aiohttp.ClientSession() as session:
            stats = await asyncio.gather(*(v.run(session) for v in viewers))
    finally:
        releaser.cancel()
    for s in stats:
        assert s["errors"] == 0
        assert s["continuity"] == 1.0
        assert s["chunks_played"] >= 8  # ~3 s of 0.2 s chunks, minus startup
        assert 0.0 <= s["startup_s"] <= 1.0
        assert 0.45 <= s["lag_s_p50"] <= 0.8  # target lag 0.5 s plus a tick
    received = sum(s["bytes_from_source"] for s in stats)
    assert received <= origin.bytes_sent  # the origin counted every byte it sent
    ratio = origin.bytes_sent / origin.window.stream_bytes
    assert 2.0 <= ratio <= 3.5  # three viewers, each ~one copy of what was released


async def test_http_viewer_waits_for_chunks_a_stalled_origin_releases_late(origin: Origin) -> None:
    """A stalled origin: a chunk released after its deadline is waited for at the live edge (the
    picture pauses) and played when it comes, not skipped. Playout re-anchors by the stalls, so
    each chunk still plays the target lag after its own release."""

    async def stalling() -> None:
        seq = 0
        while True:
            origin.release(seq, seq * CHUNK_S, CHUNK_S, b"x" * 1000)
            seq += 1
            await asyncio.sleep(CHUNK_S if seq < 8 else 1.2)  # then a 1.2 s gap per chunk

    releaser = asyncio.create_task(stalling())
    viewer = HttpViewer(origin.url, 4.0, SwarmConfig(chunk_duration_s=CHUNK_S, target_lag_s=0.3))
    try:
        async with aiohttp.ClientSession() as session:
            stats = await viewer.run(session)
    finally:
        releaser.cancel()
    assert stats["chunks_missed"] == 0, stats
    assert stats["chunks_played"] >= 8, stats
    assert stats["reanchored_s"] > 1.0, stats
    assert stats["lag_s_p95"] < 0.3 + 0.2, stats
