"""Release chunks on the wall clock, as a camera would: chunk k leaves once its last frame is shot.

`LiveSchedule` is pure (the caller passes `now`); `live_chunks` is the thin asyncio driver that runs
the blocking demux/encode work in a thread, a couple of chunks ahead, and sleeps until each release.
Inputs that deliver at real time themselves (a camera, RTSP, an encoder's push) are not held back:
each chunk leaves as soon as it is whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from streamer.media.model import Chunk
from streamer.media.stream import MediaStream

log = logging.getLogger(__name__)


@dataclass
class LiveSchedule:
    """Maps media time to wall-clock release times.

    Media time t is "shot" at anchor + t. A chunk is released when its end has been shot. If the
    producer falls behind by more than `resync_after_s` (a slow transcode, a source that hiccups),
    the clock is re-anchored so later chunks are not released in a burst to catch up.
    """

    anchor_s: float  # wall-clock time of media time 0
    resync_after_s: float = 3.0
    resyncs: int = 0

    @classmethod
    def starting_at(cls, now: float, resync_after_s: float = 3.0) -> LiveSchedule:
        return cls(anchor_s=now, resync_after_s=resync_after_s)

    def release_time(
        self, chunk_start_s: float, chunk_duration_s: float, now: float, may_resync: bool = True
    ) -> float:
        """When to release a chunk that is ready at `now` (may be <= now: release at once).

        `may_resync=False`: a chunk late for a known reason (held back while an encoder was
        away) goes out at once without moving the clock for the chunks after it.
        """
        due = self.anchor_s + chunk_start_s + chunk_duration_s
        if may_resync and now - due > self.resync_after_s:
            self.anchor_s = now - (chunk_start_s + chunk_duration_s)
            self.resyncs += 1
            return now
        return due

    def delay_s(
        self, chunk_start_s: float, chunk_duration_s: float, now: float, may_resync: bool = True
    ) -> float:
        """Seconds to wait before releasing (0 when due or late)."""
        release_s = self.release_time(chunk_start_s, chunk_duration_s, now, may_resync)
        return max(0.0, release_s - now)


_END = object()


async def live_chunks(
    stream: MediaStream,
    *,
    prefetch_chunks: int = 2,
    resync_after_s: float = 3.0,
    clock: Callable[[], float] = time.monotonic,
) -> AsyncIterator[Chunk]:
    """The stream's chunks, each released when a live source would have it.

    Demuxing and encoding run in a worker thread (never on the event loop) at most
    `prefetch_chunks` ahead. A MediaError in the worker is raised here. Stopping early (break,
    cancel) stops the worker and closes the stream.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[object] = asyncio.Queue(maxsize=max(1, prefetch_chunks))
    stop = threading.Event()

    def put(item: object) -> bool:
        future = asyncio.run_coroutine_threadsafe(queue.put(item), loop)
        while not stop.is_set():
            try:
                future.result(timeout=0.2)
                return True
            except TimeoutError:
                continue
        future.cancel()
        return False

    def produce() -> None:
        iterator = stream.chunks()
        try:
            for chunk in iterator:
                if not put(chunk):
                    break
            else:
                put(_END)
        except BaseException as error:  # handed to the consumer, which raises it
            put(error)
        finally:
            with contextlib.suppress(Exception):
                iterator.close()  # type: ignore[attr-defined]
            stream.close()

    worker = threading.Thread(target=produce, name="media-producer", daemon=True)
    worker.start()
    schedule = LiveSchedule.starting_at(clock(), resync_after_s)
    try:
        while True:
            item = await queue.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            assert isinstance(item, Chunk)
            # Chunks from before an encoder's reconnect were held back by the outage, not by a
            # slow producer: they must not push the later chunks back by the outage.
            held_back = item.start_s < stream.resumed_at_s - 0.25
            delay = schedule.delay_s(item.start_s, item.duration_s, clock(), not held_back)
            if stream.paced_by_source:
                delay = 0.0  # a camera or an encoder already delivers at real time
            if delay > 0:
                await asyncio.sleep(delay)
            yield item
    finally:
        stop.set()
        stream.interrupt()  # a worker waiting for an encoder to push again stops waiting
        if schedule.resyncs:
            log.info(
                "live pacing re-anchored %d times (producer slower than real time)",
                schedule.resyncs,
            )
        await asyncio.to_thread(worker.join, 5.0)
