"""A client-server viewer: fetches the live stream from the origin over HTTP and plays it by the
swarm's own playout rules (streamer.swarm.playback.Playback), so its startup, continuity and lag
are comparable figure for figure with `streamer watch`.

Like an HLS/DASH player: it asks where the live edge is, starts `start_behind_chunks` behind it,
then fetches chunks in order with one long-poll request at a time, never more than
`fetch_ahead_chunks` ahead of playout; a chunk still missing at its deadline is skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from streamer.bench.figures import percentile
from streamer.swarm.config import SwarmConfig
from streamer.swarm.playback import Playback

TICK_S = 0.05
"""Playout clock granularity: deadlines are checked this often (and whenever a chunk arrives)."""


class ViewerError(Exception):
    """The origin answered something a player cannot use."""


@dataclass
class HttpViewer:
    base_url: str
    duration_s: float
    config: SwarmConfig = field(default_factory=SwarmConfig)
    clock: Callable[[], float] = time.time
    request_timeout_s: float = 15.0
    bytes_received: int = 0
    errors: int = 0
    lag_samples: list[tuple[float, float]] = field(default_factory=list)
    """(wall time, lag_s) of every chunk played: the per-viewer lag over time."""
    playback: Playback | None = None
    _have: dict[int, tuple[float, float]] = field(default_factory=dict)
    """seq -> (media start s, release s) of every complete chunk."""
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, session: aiohttp.ClientSession) -> dict[str, Any]:
        """Watch for duration_s; the stats dict has the same keys as `streamer watch`'s."""
        joined_s = self.clock()
        end_s = joined_s + self.duration_s
        pb = Playback(
            chunk_duration_s=self.config.chunk_duration_s,
            start_behind_chunks=self.config.start_behind_chunks,
            joined_s=joined_s,
            target_lag_s=self.config.target_lag_s,
        )
        self.playback = pb
        fetcher: asyncio.Task[None] | None = None
        try:
            live = await self._get_json(session, "/live")
            newest = live.get("newest_seq")
            if not isinstance(newest, int) or newest < 0:
                raise ViewerError("origin /live has no valid newest_seq")
            await self._get_bytes(session, "/init")
            pb.hear_of(newest)
            fetcher = asyncio.create_task(self._fetch_loop(session, pb))
            while (now := self.clock()) < end_s and not fetcher.done():
                self._play(pb, now)
                self._arrived.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._arrived.wait(), min(TICK_S, end_s - now))
            if fetcher.done():
                fetcher.result()  # raises the fetch loop's error
        except (aiohttp.ClientError, TimeoutError, ViewerError, ValueError):
            self.errors += 1
        finally:
            if fetcher is not None:
                fetcher.cancel()
                await asyncio.gather(fetcher, return_exceptions=True)
        return self.stats()

    def _play(self, pb: Playback, now: float) -> None:
        if not pb.started and pb.start_seq in self._have:
            media_start_s, release_s = self._have[pb.start_seq]
            pb.start_if_ready(now, True, media_start_s, release_s)

        def media_start(seq: int) -> float | None:
            got = self._have.get(seq)
            return None if got is None else got[0]

        def release(seq: int) -> float | None:
            got = self._have.get(seq)
            return None if got is None else got[1]

        def at_edge(seq: int) -> bool:
            """Nothing of seq or later has come: it is not released yet (chunks come in order)."""
            return all(s < seq for s in self._have)

        for seq, ok in pb.due(now, media_start, self._have.__contains__, None, release, at_edge):
            if ok:
                media_start_s, release_s = self._have[seq]
                lag_s = pb.deadline(seq, media_start_s, now) - release_s
                pb.lags_s.append(lag_s)
                self.lag_samples.append((now, lag_s))
        if pb.next_seq is not None:
            for seq in [s for s in self._have if s < pb.next_seq - 1]:
                del self._have[seq]

    async def _fetch_loop(self, session: aiohttp.ClientSession, pb: Playback) -> None:
        assert pb.start_seq is not None
        seq = pb.start_seq
        while True:
            next_play = pb.next_seq if pb.next_seq is not None else pb.start_seq
            seq = max(seq, next_play)  # never fetch what was already skipped
            if seq >= next_play + self.config.fetch_ahead_chunks:
                await asyncio.sleep(TICK_S)
                continue
            status, _body, headers = await self._get(session, f"/chunk/{seq}")
            if status == 200:
                try:
                    media_start_s = float(headers["X-Media-Start-S"])
                    release_s = float(headers["X-Release-S"])
                except (KeyError, ValueError):
                    raise ViewerError(f"chunk {seq} came without valid timing headers") from None
                self._have[seq] = (media_start_s, release_s)
                self._arrived.set()
                seq += 1
            elif status == 410:  # fell out of the origin's window: skip it
                seq += 1
            elif status == 504:  # not released within the origin's wait: ask again
                continue
            else:
                raise ViewerError(f"origin answered {status} for chunk {seq}")

    async def _get(
        self, session: aiohttp.ClientSession, path: str
    ) -> tuple[int, bytes, dict[str, str]]:
        timeout = aiohttp.ClientTimeout(total=self.request_timeout_s)
        async with session.get(self.base_url + path, timeout=timeout) as response:
            body = await response.read()
            self.bytes_received += len(body)
            return response.status, body, dict(response.headers)

    async def _get_bytes(self, session: aiohttp.ClientSession, path: str) -> bytes:
        status, body, _headers = await self._get(session, path)
        if status != 200:
            raise ViewerError(f"origin answered {status} for {path}")
        return body

    async def _get_json(self, session: aiohttp.ClientSession, path: str) -> dict[str, Any]:
        data = json.loads(await self._get_bytes(session, path))
        if not isinstance(data, dict):
            raise ViewerError(f"origin {path} is not a JSON object")
        return data

    def stats(self) -> dict[str, Any]:
        pb = self.playback
        lags = pb.lags_s if pb else []
        return {
            "role": "http-viewer",
            "startup_s": pb.startup_s if pb else None,
            "continuity": pb.continuity if pb else None,
            "lag_s_p50": percentile(lags, 0.5),
            "lag_s_p95": percentile(lags, 0.95),
            "chunks_played": pb.played if pb else 0,
            "chunks_missed": pb.missed if pb else 0,
            "reanchored_s": pb.reanchored_s if pb else 0.0,
            "bytes_from_source": self.bytes_received,
            "bytes_from_peers": 0,
            "bytes_uploaded": 0,
            "errors": self.errors,
        }
