"""The client-server baseline's origin: one aiohttp server that serves a live stream over HTTP.

What a CDN-less HLS/DASH origin does: the init segment, and each chunk once it is released, to
every viewer that asks; a viewer long-polls the next chunk (the request waits until the chunk is
released). It counts every body byte it sends, which is the "source upload" of client-server.

Rules: loopback only by default; `seq` from the URL is validated (digits, not too far ahead), a
request for a chunk that fell out of the window gets 410 and one not yet released waits at most
`wait_s` (then 504): hostile or confused clients get a status code, never a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

MAX_SEQ_DIGITS = 10


@dataclass(frozen=True, slots=True)
class Released:
    seq: int
    media_start_s: float
    duration_s: float
    release_s: float
    """Wall-clock (time.time()) instant the origin released it: lag is measured from here."""
    data: bytes


class ChunkWindow:
    """The last `keep_chunks` released chunks, by seq. Pure: no I/O, no clock."""

    def __init__(self, keep_chunks: int = 30, max_ahead_chunks: int = 10) -> None:
        self.keep_chunks = keep_chunks
        self.max_ahead_chunks = max_ahead_chunks
        self._chunks: dict[int, Released] = {}
        self.newest_seq: int | None = None
        self.stream_bytes = 0

    def add(self, chunk: Released) -> None:
        if self.newest_seq is not None and chunk.seq != self.newest_seq + 1:
            raise ValueError(f"chunk {chunk.seq} released after {self.newest_seq}")
        self._chunks[chunk.seq] = chunk
        self.newest_seq = chunk.seq
        self.stream_bytes += len(chunk.data)
        self._chunks.pop(chunk.seq - self.keep_chunks, None)

    def lookup(self, seq: int) -> Released | str:
        """The chunk, or why not: 'gone' (evicted), 'later' (not yet released), 'too_far'."""
        if seq in self._chunks:
            return self._chunks[seq]
        newest = -1 if self.newest_seq is None else self.newest_seq
        if seq <= newest:
            return "gone"
        if seq > newest + self.max_ahead_chunks:
            return "too_far"
        return "later"


class Origin:
    """The HTTP origin: routes /live, /init and /chunk/{seq}; counts the bytes it sends."""

    def __init__(
        self,
        init_segment: bytes,
        chunk_seconds: float,
        *,
        wait_s: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.init_segment = init_segment
        self.chunk_seconds = chunk_seconds
        self.wait_s = wait_s
        self.window = ChunkWindow()
        self.bytes_sent = 0
        self.requests = 0
        self._clock = clock
        self._released = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._closing = False
        self.url = ""

    def release(self, seq: int, media_start_s: float, duration_s: float, data: bytes) -> None:
        """Publish a chunk now and wake every request waiting for it."""
        self.window.add(Released(seq, media_start_s, duration_s, self._clock(), data))
        self._released.set()
        self._released = asyncio.Event()

    async def _wait_release(self, timeout_s: float) -> None:
        if self._closing:
            raise web.HTTPServiceUnavailable(text="the origin is shutting down")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._released.wait(), timeout_s)
        if self._closing:
            raise web.HTTPServiceUnavailable(text="the origin is shutting down")

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/live", self._live)
        app.router.add_get("/init", self._init)
        app.router.add_get("/chunk/{seq}", self._chunk)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        server = site._server  # aiohttp exposes the bound port only here
        sockets = getattr(server, "sockets", None)
        if not sockets:
            raise OSError("the origin has no listening socket")
        bound_port = int(sockets[0].getsockname()[1])
        self.url = f"http://{host}:{bound_port}"
        return self.url

    async def close(self) -> None:
        """Stop: waiting long-polls are answered 503 at once instead of holding shutdown up."""
        self._closing = True
        self._released.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _live(self, request: web.Request) -> web.Response:
        """Where the live edge is; waits (up to wait_s) for the first chunk."""
        self.requests += 1
        deadline = time.monotonic() + self.wait_s
        while self.window.newest_seq is None and time.monotonic() < deadline:
            await self._wait_release(deadline - time.monotonic())
        if self.window.newest_seq is None:
            raise web.HTTPServiceUnavailable(text="no chunk released yet")
        body = {"newest_seq": self.window.newest_seq, "chunk_seconds": self.chunk_seconds}
        response = web.json_response(body)
        self.bytes_sent += len(response.body or b"")  # type: ignore[arg-type]
        return response

    async def _init(self, request: web.Request) -> web.Response:
        self.requests += 1
        self.bytes_sent += len(self.init_segment)
        return web.Response(body=self.init_segment, content_type="video/mp4")

    async def _chunk(self, request: web.Request) -> web.Response:
        self.requests += 1
        text = request.match_info["seq"]
        if not text.isdigit() or len(text) > MAX_SEQ_DIGITS:
            raise web.HTTPBadRequest(text="seq must be a non-negative integer")
        seq = int(text)
        deadline = time.monotonic() + self.wait_s
        while True:
            found = self.window.lookup(seq)
            if isinstance(found, Released):
                break
            if found == "gone":
                raise web.HTTPGone(text=f"chunk {seq} is no longer available")
            if found == "too_far":
                raise web.HTTPNotFound(text=f"chunk {seq} is too far ahead of the live edge")
            remaining_s = deadline - time.monotonic()
            if remaining_s <= 0:
                raise web.HTTPGatewayTimeout(text=f"chunk {seq} not released yet")
            await self._wait_release(remaining_s)
        self.bytes_sent += len(found.data)
        return web.Response(
            body=found.data,
            content_type="video/mp4",
            headers={
                "X-Media-Start-S": repr(found.media_start_s),
                "X-Release-S": repr(found.release_s),
            },
        )
