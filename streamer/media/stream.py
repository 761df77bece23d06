"""`open_media(input, options)`: an input becomes an init segment and a sequence of chunks.

Joins the PyAV pipeline (bytes) to the pure splitter and chunk assembler. `chunks()` runs as fast as
the input allows; `streamer.media.pacing.live_chunks` releases them on the wall clock.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterator
from types import TracebackType

from streamer.media.boxes import BoxError
from streamer.media.codecs import codecs_for_init, mime_type_for
from streamer.media.errors import MediaError
from streamer.media.fmp4 import ChunkAssembler, Fragment, FragmentSplitter
from streamer.media.gop import GopAction, gop_note
from streamer.media.ingest import PushListener
from streamer.media.inputs import InputSpec, resolve_input
from streamer.media.model import Chunk, MediaInfo, MediaOptions
from streamer.media.pipeline import SESSION_END, Pipeline

log = logging.getLogger(__name__)


class MediaStream:
    """An opened input: `info` is known at once, `chunks()` yields the media. A context manager."""

    def __init__(self, pipeline: Pipeline, options: MediaOptions) -> None:
        self._pipeline = pipeline
        self._options = options
        self._bytes = pipeline.run()
        self._splitter = FragmentSplitter()
        self._ready: deque[Fragment] = deque()
        self._started = False
        self._closed = False
        self._pending_session_end = False
        self.info = self._read_info()
        self.plan_reason = pipeline.plan.reason

    def _read_info(self) -> MediaInfo:
        """Pull muxer output until the init segment is complete (keeping any fragments)."""
        name = self._pipeline.spec.display_name
        while self._splitter.init_segment is None:
            data = next(self._bytes, None)
            if data is None:
                break
            if data == SESSION_END:
                self._pending_session_end = True
                continue
            self._feed(data)
        if self._splitter.init_segment is None or self._splitter.init_info is None:
            self.close()
            raise MediaError(f"{name}: no media could be read (empty or truncated input)")
        try:
            codecs = codecs_for_init(self._splitter.init_info)
        except BoxError as error:
            self.close()
            raise MediaError(f"{name}: cannot derive the codec string: {error}") from error
        plan = self._pipeline.plan
        facts = self._pipeline.facts
        return MediaInfo(
            mime_type=mime_type_for(codecs),
            codecs=codecs,
            init_segment=self._splitter.init_segment,
            chunk_seconds=self._options.chunk_seconds,
            has_video=plan.video is not None,
            has_audio=plan.audio is not None,
            width=self._pipeline.width,
            height=self._pipeline.height,
            video_transcoded=plan.video == "encode",
            audio_transcoded=plan.audio == "encode",
            source_video_codec=facts.video_codec,
            source_audio_codec=facts.audio_codec,
            is_live=self._pipeline.spec.is_live,
        )

    @property
    def paced_by_source(self) -> bool:
        """The input delivers at real time itself (camera, RTSP, a push): no holding back."""
        return self._pipeline.spec.paced_by_source

    @property
    def resumed_at_s(self) -> float:
        """Media time where the latest push after a reconnect begins (0: no reconnect), within
        the few milliseconds between the input's first timestamp and chunk 0's start."""
        return self._pipeline.resumed_at_s

    @property
    def gop_action(self) -> GopAction | None:
        """What the GOP watcher did about a long GOP in copy mode (None: nothing so far)."""
        return self._pipeline.gop_action

    @property
    def longest_gop_s(self) -> float | None:
        """The longest keyframe interval copied so far (None when video is not copied)."""
        watcher = self._pipeline.gop_watcher
        return None if watcher is None else watcher.longest_s

    def status_note(self) -> str | None:
        """A few words for the status line about the media (long GOPs, the encoder), or None."""
        notes = [gop_note(self.gop_action, self.longest_gop_s or 0.0)]
        listener = self._pipeline.listener
        if listener is not None and not listener.connected:
            notes.append("encoder disconnected, waiting")
        return "  ".join(note for note in notes if note) or None

    def _feed(self, data: bytes) -> None:
        try:
            self._ready.extend(self._splitter.feed(data))
        except BoxError as error:
            raise MediaError(
                f"{self._pipeline.spec.display_name}: bad muxer output: {error}"
            ) from error

    def chunks(self) -> Iterator[Chunk]:
        """Chunks in order, seq from 0, unpaced; never ends with loop=True and no duration."""
        if self._started:
            raise RuntimeError("chunks() can be iterated only once per MediaStream")
        self._started = True
        # Live inputs: a chunk leaves as soon as it is whole (a GOP sooner); files keep the
        # stricter rule, which also glues odd fragments to the chunk before. Pushes cut fragments
        # every 0.2 s too (not only at keyframes): their chunks close at the next keyframe.
        pushed = self._pipeline.listener is not None
        assembler = ChunkAssembler(
            self._options.chunk_seconds, close_early=self.info.is_live and not pushed
        )
        after_push = False  # a push ended: drop what trickles out until a keyframe opens a chunk
        try:
            while True:
                while self._ready:
                    fragment = self._ready.popleft()
                    if after_push:
                        if not fragment.starts_with_sync or fragment.decode_time < 0:
                            continue  # the last frames before the outage: they span it
                        after_push = False
                    chunk = assembler.add(fragment)
                    if chunk is not None:
                        yield chunk
                if self._pending_session_end:
                    self._pending_session_end = False
                    tail = assembler.finish()  # what the encoder sent before it dropped out
                    if tail is not None:
                        yield tail
                    after_push = True
                    continue
                data = next(self._bytes, None)
                if data is None:
                    break
                if data == SESSION_END:
                    self._pending_session_end = True
                    continue
                self._feed(data)
            try:
                self._splitter.finish()
            except BoxError as error:
                raise MediaError(f"{self._pipeline.spec.display_name}: {error}") from error
            while self._ready:
                chunk = assembler.add(self._ready.popleft())
                if chunk is not None:
                    yield chunk
            last = assembler.finish()
            if last is not None:
                yield last
        finally:
            self.close()

    def interrupt(self) -> None:
        """Make a wait for an encoder's push end now (any thread); a no-op for other inputs."""
        listener = self._pipeline.listener
        if listener is not None:
            listener.interrupt()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._bytes.close()  # runs the pipeline's cleanup: muxer and input closed
        self._pipeline.close()

    def __enter__(self) -> MediaStream:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def open_push(listener: PushListener, options: MediaOptions | None = None) -> MediaStream:
    """Wait for an encoder to push to `listener`, probe it; the stream survives reconnects.

    Blocks until the first good push (run it in a thread); `listener.interrupt()` ends the wait
    with `ListenInterrupted`.
    """
    options = options or MediaOptions()
    display = listener.spec.display_url
    spec = InputSpec(
        display,
        display,
        listener.spec.format,
        listener.spec.options,
        is_live=True,
        paced_by_source=True,
    )
    pipeline = Pipeline(spec, options, listener)
    return MediaStream(pipeline, options)


def open_media(input: str, options: MediaOptions | None = None) -> MediaStream:
    """Open and probe `input` (file, device, URL or `testsrc`); raises MediaError on bad input."""
    options = options or MediaOptions()
    spec = resolve_input(input)
    pipeline = Pipeline(spec, options)
    return MediaStream(pipeline, options)
