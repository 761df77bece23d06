"""Drive PyAV: input packets -> copy or encode -> fragmented-MP4 muxer -> bytes, loop after loop.

This is the only module that touches FFmpeg's demuxer, codecs and muxer. It keeps one output muxer
for the whole run, so timestamps (the fragments' tfdt) simply keep increasing across loops: each new
pass over a file is shifted by the length of the passes before it.

Rules: every FFmpeg failure leaves as a MediaError naming the input; the muxer is always closed.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import av
import numpy as np

from streamer.media.errors import MediaError
from streamer.media.gop import (
    GopAction,
    GopWatcher,
    default_gop_limit_s,
    long_gop_action,
    long_gop_message,
)
from streamer.media.ingest import ListenInterrupted, PushListener
from streamer.media.inputs import InputSpec, media_error, open_input
from streamer.media.model import MediaOptions
from streamer.media.nal import NalError, annexb_to_length_prefixed, nal_length_size
from streamer.media.plan import Plan, StreamFacts, decide

log = logging.getLogger(__name__)

AAC_SAMPLE_RATES = {
    8000,
    11025,
    12000,
    16000,
    22050,
    24000,
    32000,
    44100,
    48000,
    64000,
    88200,
    96000,
}
AAC_FRAME_SAMPLES = 1024
# Audio that drifts from where the timestamps say it belongs by more than this is padded or trimmed.
AUDIO_ALIGN_TOLERANCE_S = 0.02
MAX_DECODE_ERRORS = 50
# Pushes: the muxer also cuts a fragment every this many microseconds, so when an encoder drops out
# all but this much of what it sent is already out of the muxer (which otherwise writes a fragment
# only when the next keyframe comes). Costs ~7 kbit/s of fragment headers (0.7% of 1 Mbit/s).
PUSH_FRAGMENT_US = 200_000
SESSION_END = b""
"""What `run()` yields when a push ended: whatever is whole should leave now."""
MAX_PROBE_PACKETS = 3000


class _ByteSink:
    """The muxer's output file: collects what it writes so we can hand it on packet by packet."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: Any) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        data = b"".join(self.parts)
        self.parts.clear()
        return data


@dataclass
class _Timeline:
    """First and last media time seen in one pass over the input, per stream kind (seconds)."""

    first_s: dict[str, float] = field(default_factory=dict)
    end_s: dict[str, float] = field(default_factory=dict)

    def note(self, kind: str, start_s: float, duration_s: float) -> None:
        if kind not in self.first_s or start_s < self.first_s[kind]:
            self.first_s[kind] = start_s
        self.end_s[kind] = max(self.end_s.get(kind, start_s), start_s + duration_s)

    def length_s(self, kind: str) -> float:
        return self.end_s.get(kind, 0.0) - self.first_s.get(kind, 0.0)


def _packet_time_s(packet: Any) -> float | None:
    ts = packet.pts if packet.pts is not None else packet.dts
    if ts is None or packet.time_base is None:
        return None
    return float(ts * packet.time_base)


class Pipeline:
    """Opened and probed input plus the plan; `run()` yields the muxer's bytes."""

    def __init__(
        self, spec: InputSpec, options: MediaOptions, listener: PushListener | None = None
    ) -> None:
        self.spec = spec
        self.options = options
        self._listener = listener
        self.listener = listener
        self._session_end = ""  # why the last push ended, for the log
        self.resumed_at_s = 0.0  # output media time where the latest push after a reconnect began
        self._buffered: list[Any] = []
        # A source that delivers at real time is not probed for its GOPs (the probe would hold
        # its first seconds back): the GOP watcher sees them as they come.
        self._watch_only = spec.paced_by_source
        if options.loop and spec.is_live:
            raise MediaError(f"--loop works with files only, not with {spec.display_name}")
        if listener is not None:
            self.facts = self._first_push(listener)
        else:
            self._container = open_input(spec, options.open_timeout_s, options.read_timeout_s)
            try:
                self._select_streams(self._container)
                self.facts = self._probe()
            except BaseException:
                self._container.close()
                raise
        try:
            self.plan: Plan = decide(
                self.facts,
                options.chunk_seconds,
                options.transcode,
                self._watch_only,
                options.gop_limit_s or default_gop_limit_s(options.chunk_seconds),
            )
        except BaseException:
            self._container.close()
            raise
        self._first_extradata = self._extradata()
        video = self._video_in
        self.width = None if video is None else video.codec_context.width
        self.height = None if video is None else video.codec_context.height
        if self.plan.video == "encode" and self.width and self.height:
            self.width, self.height = self.width // 2 * 2, self.height // 2 * 2
        # Set (once, from the worker thread) when a copied GOP first exceeds the limit.
        self.gop_action: GopAction | None = None
        self.gop_watcher: GopWatcher | None = None
        if self.plan.video == "copy":
            limit_s = options.gop_limit_s or default_gop_limit_s(options.chunk_seconds)
            self.gop_watcher = GopWatcher(limit_s, self.facts.frame_duration_s or 0.0)

    # -- input -------------------------------------------------------------------------------

    def _first_push(self, listener: PushListener) -> StreamFacts:
        """Wait for an encoder whose push can be probed; a failed one is a warning, not the end."""
        while True:
            self._container = listener.accept()
            try:
                self._select_streams(self._container)
                self._buffered = []
                return self._probe()
            except MediaError as error:
                self._container.close()
                listener.disconnected()
                log.warning("%s; waiting for the next push", error)

    def _extradata(self) -> bytes | None:
        video = self._video_in
        if video is None or video.codec_context.extradata is None:
            return None
        return bytes(video.codec_context.extradata)

    def _select_streams(self, container: Any) -> None:
        self._video_in = next(
            (
                s
                for s in container.streams.video
                if not s.disposition & av.stream.Disposition.attached_pic
            ),
            None,
        )
        self._audio_in = next(iter(container.streams.audio), None)
        if self._video_in is None and self._audio_in is None:
            raise MediaError(f"{self.spec.display_name} has neither a video nor an audio stream")

    def _selected(self, container: Any) -> list[Any]:
        indexes = [s.index for s in (self._video_in, self._audio_in) if s is not None]
        return [container.streams[i] for i in indexes]

    def _demux(self, container: Any) -> Iterator[Any]:
        """Packets of the selected streams; FFmpeg errors and timeouts become MediaError."""
        iterator = container.demux(self._selected(container))
        while True:
            try:
                packet = next(iterator)
            except StopIteration:
                return
            except Exception as error:
                raise media_error(error, self.spec.display_name, "read") from error
            yield packet

    def _probe(self) -> StreamFacts:
        """Read the first seconds of packets (kept for replay) to measure keyframe intervals."""
        video = self._video_in
        audio = self._audio_in
        frame_s: float | None = None
        if video is not None:
            rate = video.average_rate or video.guessed_rate or video.base_rate
            frame_s = float(1 / rate) if rate else None
        max_interval: float | None = None
        if video is not None and video.codec_context.name == "h264" and not self._watch_only:
            window_s = max(3 * self.options.chunk_seconds, 3.0)
            keyframes: list[float] = []
            first_s: float | None = None
            last_s = 0.0
            for packet in self._demux(self._container):
                self._buffered.append(packet)
                if packet.stream.index == video.index:
                    t = _packet_time_s(packet)
                    if t is not None:
                        first_s = t if first_s is None else min(first_s, t)
                        last_s = max(last_s, t + (frame_s or 0.0))
                        if packet.is_keyframe:
                            keyframes.append(t)
                        if last_s - first_s >= window_s:
                            break
                if len(self._buffered) >= MAX_PROBE_PACKETS:
                    break
            keyframes.sort()
            if keyframes and first_s is not None:
                spans = [b - a for a, b in itertools.pairwise(keyframes)]
                spans.append(last_s - keyframes[-1])  # the GOP still open when the probe stopped
                if keyframes[0] - first_s > (frame_s or 0.0):
                    spans.append(keyframes[0] - first_s)  # leading frames with no keyframe
                max_interval = max(spans)
        return StreamFacts(
            video_codec=None if video is None else video.codec_context.name,
            audio_codec=None if audio is None else audio.codec_context.name,
            max_keyframe_interval_s=max_interval,
            frame_duration_s=frame_s,
        )

    def _passes(self) -> Iterator[tuple[Any, Iterator[Any]]]:
        """(container, packets) for each pass: the probed one first, then re-opened for loops,
        or, for pushes, each encoder that pushes again after a disconnect."""
        container = self._container

        def first_pass() -> Iterator[Any]:
            yield from self._buffered
            self._buffered = []
            yield from self._session(container)

        yield container, first_pass()
        while self.options.loop or self._listener is not None:
            container.close()
            if self._listener is not None:
                self._listener.disconnected()
                if self._listener.interrupted:
                    return
                log.warning(
                    "%s: the encoder disconnected (%s); waiting for it to push again",
                    self.spec.display_name,
                    self._session_end,
                )
                try:
                    container = self._listener.accept()
                except ListenInterrupted:
                    return
                log.warning("%s: the encoder is pushing again", self.spec.display_name)
            else:
                container = open_input(
                    self.spec, self.options.open_timeout_s, self.options.read_timeout_s
                )
            self._container = container
            self._select_streams(container)
            yield container, self._session(container)

    def _session(self, container: Any) -> Iterator[Any]:
        """A pass's packets; a push that fails or ends mid-way just ends its pass."""
        if self._listener is None:
            yield from self._demux(container)
            return
        self._session_end = "it ended the stream"
        try:
            yield from self._demux(container)
        except MediaError as error:
            self._session_end = str(error).removeprefix("cannot read ").split(": ", 1)[-1]

    # -- output ------------------------------------------------------------------------------

    def _open_output(self, sink: _ByteSink) -> tuple[Any, Any, Any]:
        flags = "frag_keyframe+empty_moov+default_base_moof"
        options = {"movflags": flags, "flush_packets": "1"}
        video = self._video_in
        audio = self._audio_in
        self._adts_filter = None
        needs_adts = (
            self.plan.audio == "copy" and audio is not None and not audio.codec_context.extradata
        )
        if needs_adts or (
            self.plan.video == "copy" and video is not None and not video.codec_context.extradata
        ):
            # MPEG-TS style input: the decoder configuration arrives with the first packets, so
            # the moov waits for them.
            options["movflags"] += "+delay_moov"
        if video is None:
            # No video keyframes to cut at: cut audio-only streams on time.
            options["frag_duration"] = str(int(self.options.chunk_seconds * 1_000_000))
        elif self._listener is not None:
            options["frag_duration"] = str(PUSH_FRAGMENT_US)
        out = av.open(sink, mode="w", format="mp4", options=options)
        video_out = audio_out = None
        if video is not None:
            if self.plan.video == "copy":
                video_out = out.add_stream_from_template(video)
            else:
                video_out = self._add_video_encoder(out, video)
        if self._audio_in is not None:
            if self.plan.audio == "copy":
                audio_out = out.add_stream_from_template(self._audio_in)
                if needs_adts:
                    self._adts_filter = av.BitStreamFilterContext("aac_adtstoasc", self._audio_in)
            else:
                audio_out = self._add_audio_encoder(out, self._audio_in)
        return out, video_out, audio_out

    def _add_video_encoder(self, out: Any, video: Any) -> Any:
        rate = video.average_rate or video.guessed_rate or Fraction(30)
        if rate > 120 or rate < 1:
            rate = Fraction(30)
        stream = out.add_stream("libx264", rate=rate)
        stream.width = self.width
        stream.height = self.height
        stream.pix_fmt = "yuv420p"
        stream.time_base = video.time_base
        stream.codec_context.time_base = video.time_base
        stream.bit_rate = self.options.video_bitrate_bps
        stream.codec_context.options = self._x264_options(rate)
        return stream

    def _x264_options(self, rate: Fraction) -> dict[str, str]:
        keyint = max(1, round(float(rate) * self.options.chunk_seconds))
        kbps = self.options.video_bitrate_bps // 1000
        return {
            "preset": self.options.x264_preset,
            "tune": "zerolatency",  # no B-frames, no lookahead: a frame leaves as soon as it is in
            "profile": "high",
            "g": str(keyint),
            "forced-idr": "1",
            "x264-params": f"scenecut=0:vbv-maxrate={kbps * 3 // 2}:vbv-bufsize={kbps}",
        }

    def _switch_encoder(self, video: Any, video_out: Any) -> _VideoEncoder:
        """libx264 feeding the copied track: same size, parameter sets in band, length-prefixed."""
        rate = video.average_rate or video.guessed_rate or Fraction(30)
        if rate > 120 or rate < 1:
            rate = Fraction(30)
        width = (video.codec_context.width or 2) // 2 * 2
        height = (video.codec_context.height or 2) // 2 * 2
        try:
            length_size = nal_length_size(bytes(video_out.codec_context.extradata or b""))
        except NalError:
            length_size = 4
        codec = av.CodecContext.create("libx264", "w")
        codec.width, codec.height = width, height
        codec.pix_fmt = "yuv420p"
        codec.time_base = video.time_base
        codec.framerate = rate
        codec.bit_rate = self.options.video_bitrate_bps
        codec.options = self._x264_options(rate)

        def encode(frame: Any) -> list[Any]:
            packets = []
            for packet in codec.encode(frame):
                try:
                    data = annexb_to_length_prefixed(bytes(packet), length_size)
                except NalError as error:
                    raise MediaError(f"libx264 wrote an unexpected packet: {error}") from error
                framed = av.Packet(data)
                framed.pts, framed.dts = packet.pts, packet.dts
                framed.duration = packet.duration
                framed.time_base = codec.time_base
                framed.is_keyframe = packet.is_keyframe
                framed.stream = video_out
                packets.append(framed)
            return packets

        return _VideoEncoder(encode, width, height, self.options.chunk_seconds)

    def _add_audio_encoder(self, out: Any, audio: Any) -> Any:
        in_rate = audio.codec_context.sample_rate or 48000
        rate = in_rate if in_rate in AAC_SAMPLE_RATES else 48000
        channels = audio.codec_context.channels or 2
        stream = out.add_stream("aac", rate=rate)
        stream.layout = "mono" if channels == 1 else "stereo"
        stream.bit_rate = self.options.audio_bitrate_bps
        return stream

    # -- the run -----------------------------------------------------------------------------

    def run(self) -> Generator[bytes, None, None]:
        """Everything the muxer writes, in order, as it writes it; ends when the input does.

        Pushes: `SESSION_END` (empty bytes) after each push that ended."""
        sink = _ByteSink()
        try:
            out, video_out, audio_out = self._open_output(sink)
        except MediaError:
            self.close()
            raise
        except Exception as error:
            self.close()
            raise media_error(error, self.spec.display_name, "set up the output for") from error
        try:
            try:
                yield from self._run(out, video_out, audio_out, sink)
            except (MediaError, GeneratorExit):
                raise
            except Exception as error:  # anything FFmpeg or numpy throws mid-stream
                raise media_error(error, self.spec.display_name, "process") from error
            try:
                out.close()
            except Exception as error:
                raise media_error(error, self.spec.display_name, "finish") from error
            tail = sink.take()
            if tail:
                yield tail
        finally:
            try:
                out.close()
            except Exception:  # already closed, or failing after an earlier error we report
                log.debug("output close failed", exc_info=True)
            self.close()

    def close(self) -> None:
        if self._listener is not None:
            self._listener.interrupt()
        try:
            self._container.close()
        except Exception:
            log.debug("input close failed", exc_info=True)

    def _run(self, out: Any, video_out: Any, audio_out: Any, sink: _ByteSink) -> Iterator[bytes]:
        name = self.spec.display_name
        video_enc = (
            _VideoEncoder(
                video_out.encode, video_out.width, video_out.height, self.options.chunk_seconds
            )
            if self.plan.video == "encode"
            else None
        )
        watcher = self.gop_watcher
        # Copy mode holds the open GOP's packets after its keyframe (the muxer would not write
        # them before the next keyframe anyway), so a GOP found too long can still be re-encoded
        # from the frame after its keyframe.
        held: list[tuple[Any, str]] = []
        gop_key: Any = None  # a copy of the open GOP's keyframe, as it was muxed
        audio_enc = _AudioEncoder(audio_out) if self.plan.audio == "encode" else None
        primary = "video" if self._video_in is not None else "audio"
        limit_s = self.options.duration_s
        offset_s = Fraction(0)
        origin_s: float | None = None
        self._decode_errors = 0
        last_dts: dict[str, int] = {}
        live_sessions = self._listener is not None
        end_out_s = 0.0  # where the output's media time has got to (pushes)
        last_read_s = time.monotonic()  # wall time of the last packet read (pushes)
        for pass_index, (_container, packets) in enumerate(self._passes()):
            timeline = _Timeline()
            gop_key = None  # a keyframe of an earlier pass is no start for this one's decoder
            # A push after a reconnect continues on the wall clock: the pause stays a pause.
            place_session = live_sessions and pass_index > 0
            changed = place_session and self._extradata() != self._first_extradata
            video_now = self._video_in
            if changed and self.plan.video == "copy" and video_enc is None and video_now:
                log.warning(
                    "%s: the encoder's video settings changed: re-encoding from here on", name
                )
                video_enc = self._switch_encoder(video_now, video_out)
                watcher = None
                self.gop_action = "switch"
            if video_enc is not None:
                video_enc.force_keyframe()
            kinds = {}
            if self._video_in is not None:
                kinds[self._video_in.index] = "video"
            if self._audio_in is not None:
                kinds[self._audio_in.index] = "audio"
            video_in = self._video_in
            stop = False
            for packet in packets:
                kind = kinds.get(packet.stream.index)
                if kind is None:
                    continue
                t = _packet_time_s(packet)
                if live_sessions:
                    now_s = time.monotonic()
                    if place_session and t is not None:
                        place_session = False
                        gap_s = max(now_s - last_read_s, self.facts.frame_duration_s or 0.04)
                        offset_s = Fraction(reconnect_offset_s(end_out_s, t, gap_s))
                        offset_s = offset_s.limit_denominator(1_000_000)
                        self.resumed_at_s = end_out_s + gap_s
                    last_read_s = now_s
                if t is not None:
                    dur = float(packet.duration * packet.time_base) if packet.duration else 0.0
                    if not dur and kind == "video" and self.facts.frame_duration_s:
                        dur = self.facts.frame_duration_s
                    timeline.note(kind, t, dur)
                    if kind == primary and limit_s is not None:
                        if origin_s is None:
                            origin_s = t + float(offset_s)
                        if t + float(offset_s) - origin_s >= limit_s:
                            stop = True
                            break
                encoder: _VideoEncoder | _AudioEncoder | None = (
                    video_enc if kind == "video" else audio_enc
                )
                if encoder is not None:
                    for frame in self._decode(packet, kind):
                        for out_packet in encoder.encode(frame, offset_s):
                            self._mux(out, out_packet)
                else:
                    if packet.dts is None or packet.size == 0:
                        continue
                    shift = round(offset_s / packet.time_base)
                    packet.pts = None if packet.pts is None else packet.pts + shift
                    packet.dts = packet.dts + shift
                    if kind in last_dts and packet.dts <= last_dts[kind]:
                        continue  # overlaps the previous pass (audio at a loop seam): drop it
                    last_dts[kind] = packet.dts
                    if watcher is None:
                        self._copy(out, packet, kind, video_out, audio_out)
                    elif kind != "video":
                        if held:
                            held.append((packet, kind))
                        else:
                            self._copy(out, packet, kind, video_out, audio_out)
                    else:
                        if not packet.duration and self.facts.frame_duration_s:
                            packet.duration = round(self.facts.frame_duration_s / packet.time_base)
                        if packet.is_keyframe:
                            for held_packet, held_kind in held:
                                self._copy(out, held_packet, held_kind, video_out, audio_out)
                            held = []
                            # The keyframe goes to the muxer at once (it closes the fragment
                            # before it); a copy is kept to decode from if its GOP runs long.
                            gop_key = _clone_packet(packet)
                            self._copy(out, packet, kind, video_out, audio_out)
                        else:
                            held.append((packet, kind))
                        at_s = float(packet.dts * packet.time_base)
                        if watcher.note(at_s, packet.is_keyframe):
                            action = long_gop_action(self.options.transcode)
                            self.gop_action = action
                            message = long_gop_message(
                                action, watcher.limit_s, self.options.chunk_seconds
                            )
                            log.warning("%s: %s", name, message)
                            if action == "switch" and video_in is not None:
                                video_enc = self._switch_encoder(video_in, video_out)
                                self._reencode_held(
                                    out,
                                    video_in,
                                    video_enc,
                                    gop_key,
                                    held,
                                    offset_s,
                                    video_out,
                                    audio_out,
                                )
                                held = []
                                watcher = None
                data = sink.take()
                if data:
                    yield data
            for held_packet, held_kind in held:
                self._copy(out, held_packet, held_kind, video_out, audio_out)
            held = []
            # Flush the decoders of this pass, so no frame is lost at a loop seam.
            for stream_in, encoder2 in ((video_in, video_enc), (self._audio_in, audio_enc)):
                if encoder2 is None or stream_in is None or stop:
                    continue
                try:
                    frames = stream_in.codec_context.decode(None)
                except Exception:
                    frames = []
                for frame in frames:
                    for out_packet in encoder2.encode(frame, offset_s):
                        self._mux(out, out_packet)
            if stop:
                break
            length_s = timeline.length_s(primary)
            if live_sessions:
                if timeline.end_s:
                    end_out_s = max(end_out_s, max(timeline.end_s.values()) + float(offset_s))
                data = sink.take()
                if data:
                    yield data
                yield SESSION_END
                continue
            if length_s <= 0:
                if pass_index == 0:
                    raise MediaError(f"{name}: no {primary} packets could be read")
                raise MediaError(f"{name}: changed while looping (no {primary} on a later pass)")
            offset_s += Fraction(length_s).limit_denominator(1_000_000)
            if self.options.loop:
                log.info("%s: loop %d done, %.3f s", name, pass_index + 1, length_s)
        for encoder3 in (video_enc, audio_enc):
            if encoder3 is not None:
                for out_packet in encoder3.flush():
                    self._mux(out, out_packet)
        data = sink.take()
        if data:
            yield data

    def _reencode_held(
        self,
        out: Any,
        video_in: Any,
        video_enc: _VideoEncoder,
        gop_key: Any,
        held: list[tuple[Any, str]],
        offset_s: Fraction,
        video_out: Any,
        audio_out: Any,
    ) -> None:
        """Re-encode the open GOP after its keyframe (already muxed as it was): the decoder
        starts at the keyframe, the encoder at the frame after it, with an IDR of its own."""
        codec = video_in.codec_context
        key_s: float | None = None
        if gop_key is not None:
            _unshift(gop_key, offset_s)
            if gop_key.pts is not None:
                key_s = float(gop_key.pts * gop_key.time_base)
            for _frame in self._decode(gop_key, "video", codec):
                pass  # only primes the decoder: the keyframe itself went out copied
        for packet, kind in held:
            if kind != "video":
                self._copy(out, packet, kind, video_out, audio_out)
                continue
            # Decoded frames may come out later, with packets read after this: all unshifted.
            _unshift(packet, offset_s)
            for frame in self._decode(packet, "video", codec):
                if frame.pts is None:
                    continue
                if key_s is not None and float(frame.pts * frame.time_base) <= key_s + 1e-6:
                    continue  # the keyframe's own picture, or a leading one before it
                for out_packet in video_enc.encode(frame, offset_s):
                    self._mux(out, out_packet)

    def _decode(self, packet: Any, kind: str, codec: Any = None) -> list[Any]:
        """Frames of one packet; an undecodable packet is skipped with a warning."""
        try:
            return list(packet.decode() if codec is None else codec.decode(packet))
        except Exception as error:
            self._decode_errors += 1
            log.warning(
                "%s: skipping undecodable %s packet: %s", self.spec.display_name, kind, error
            )
            if self._decode_errors > MAX_DECODE_ERRORS:
                raise MediaError(
                    f"{self.spec.display_name}: too many undecodable packets (corrupt input)"
                ) from error
            return []

    def _copy(self, out: Any, packet: Any, kind: str, video_out: Any, audio_out: Any) -> None:
        out_stream = video_out if kind == "video" else audio_out
        filtered = [packet]
        if kind == "audio" and self._adts_filter is not None:
            filtered = self._adts_filter.filter(packet)
        for item in filtered:
            item.stream = out_stream
            self._mux(out, item)

    def _mux(self, out: Any, packet: Any) -> None:
        try:
            out.mux(packet)
        except Exception as error:
            raise media_error(error, self.spec.display_name, "remux") from error


def _clone_packet(packet: Any) -> Any:
    """A copy of a packet that muxing (which rebases its timestamps) leaves alone."""
    clone = av.Packet(bytes(packet))
    clone.pts, clone.dts = packet.pts, packet.dts
    clone.time_base = packet.time_base
    clone.is_keyframe = packet.is_keyframe
    return clone


def _unshift(packet: Any, offset_s: Fraction) -> None:
    """Undo the pass offset applied to a copied packet (the decoder sees input time)."""
    back = round(offset_s / packet.time_base)
    packet.pts = None if packet.pts is None else packet.pts - back
    packet.dts = None if packet.dts is None else packet.dts - back


def reconnect_offset_s(end_out_s: float, first_in_s: float, gap_s: float) -> float:
    """The shift that puts a new push's first packet `gap_s` after where the output got to."""
    return end_out_s + gap_s - first_in_s


class _VideoEncoder:
    """libx264 with a keyframe forced at every chunk boundary (by time, so variable rate works)."""

    def __init__(
        self,
        encode: Callable[[Any], list[Any]],
        width: int,
        height: int,
        chunk_seconds: float,
    ) -> None:
        self._encode = encode
        self.width = width
        self.height = height
        self.chunk_seconds = chunk_seconds
        self._first_s: float | None = None
        self._last_chunk_index = -1
        self._last_pts: int | None = None
        self._force_key = False

    def force_keyframe(self) -> None:
        """The next frame starts a chunk (a new push after a reconnect)."""
        self._force_key = True

    def encode(self, frame: Any, offset_s: Fraction) -> list[Any]:
        if frame.pts is None:
            return []
        time_base = frame.time_base
        frame.pts = frame.pts + round(offset_s / time_base)
        if self._last_pts is not None and frame.pts <= self._last_pts:
            return []  # duplicate or backwards timestamp: x264 would reject it
        self._last_pts = frame.pts
        t = float(frame.pts * time_base)
        if self._first_s is None or self._force_key:
            self._force_key = False  # chunks count on from this keyframe
            self._first_s = t
            self._last_chunk_index = -1
        index = math.floor((t - self._first_s) / self.chunk_seconds + 1e-6)
        out = frame
        if (
            frame.format.name != "yuv420p"
            or frame.width != self.width
            or frame.height != self.height
        ):
            out = frame.reformat(width=self.width, height=self.height, format="yuv420p")
            out.pts = frame.pts
            out.time_base = time_base
        if index > self._last_chunk_index:
            self._last_chunk_index = index
            out.pict_type = av.video.frame.PictureType.I
        else:
            out.pict_type = av.video.frame.PictureType.NONE
        return list(self._encode(out))

    def flush(self) -> list[Any]:
        return list(self._encode(None))


class _AudioEncoder:
    """AAC in 1024-sample frames on a sample clock that follows the input's timestamps.

    Samples are numbered contiguously; where the input jumps (a loop seam, a dropout) the audio is
    padded with silence or trimmed so it stays in sync with the video.
    """

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.rate = int(stream.codec_context.sample_rate)
        self.layout = stream.codec_context.layout.name
        self.resampler = av.AudioResampler(format="fltp", layout=self.layout, rate=self.rate)
        self._pending: np.ndarray | None = None
        self._position: int | None = None  # sample index of the first pending sample
        self._tolerance = int(AUDIO_ALIGN_TOLERANCE_S * self.rate)

    def _channels(self) -> int:
        return 1 if self.layout == "mono" else 2

    def encode(self, frame: Any, offset_s: Fraction) -> list[Any]:
        expected: int | None = None
        if frame.pts is not None and frame.time_base is not None:
            expected = round((frame.pts * frame.time_base + offset_s) * self.rate)
        arrays = [f.to_ndarray() for f in self.resampler.resample(frame)]
        if not arrays:
            return []
        samples = np.concatenate(arrays, axis=1).astype(np.float32)
        if self._pending is None:
            self._pending = np.zeros((self._channels(), 0), dtype=np.float32)
            self._position = expected if expected is not None else 0
        assert self._position is not None
        if expected is not None:
            end = self._position + self._pending.shape[1]
            drift = expected - end
            if drift > self._tolerance:
                silence = np.zeros((samples.shape[0], drift), dtype=np.float32)
                samples = np.concatenate([silence, samples], axis=1)
            elif drift < -self._tolerance:
                samples = samples[:, -drift:]
        self._pending = np.concatenate([self._pending, samples], axis=1)
        return self._drain(final=False)

    def _drain(self, final: bool) -> list[Any]:
        packets: list[Any] = []
        assert self._pending is not None and self._position is not None
        while self._pending.shape[1] >= AAC_FRAME_SAMPLES or (final and self._pending.shape[1]):
            take = min(AAC_FRAME_SAMPLES, self._pending.shape[1])
            block = np.ascontiguousarray(self._pending[:, :take])
            self._pending = self._pending[:, take:]
            frame = av.AudioFrame.from_ndarray(block, format="fltp", layout=self.layout)
            frame.sample_rate = self.rate
            frame.pts = self._position
            frame.time_base = Fraction(1, self.rate)
            self._position += take
            packets.extend(self.stream.encode(frame))
        return packets

    def flush(self) -> list[Any]:
        packets: list[Any] = []
        if self._pending is not None:
            tail = [f.to_ndarray() for f in self.resampler.resample(None)]
            if tail:
                self._pending = np.concatenate([self._pending, *tail], axis=1).astype(np.float32)
            packets.extend(self._drain(final=True))
        packets.extend(self.stream.encode(None))
        return packets
