"""Make small real media files for the media tests, and read fMP4 output back with PyAV."""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np


@dataclass(frozen=True)
class ClipSpec:
    duration_s: float = 3.0
    video_codec: str | None = "libx264"
    audio_codec: str | None = "aac"
    fps: int = 30
    width: int = 160
    height: int = 120
    gop_frames: int = 30
    bframes: int = 0
    sample_rate: int = 48000
    video_options: tuple[tuple[str, str], ...] = ()
    # Keyframes at exactly these times (seconds; 0 is always one) instead of every gop_frames, as
    # encoders with scene cuts, "auto" intervals or GOPs that change length mid-stream send them.
    keyframes_s: tuple[float, ...] | None = None


def make_clip(path: Path, spec: ClipSpec) -> Path:
    """Encode a test pattern (and a tone) into `path`; the container follows the extension."""
    out = av.open(str(path), mode="w")
    video = audio = None
    if spec.video_codec:
        video = out.add_stream(spec.video_codec, rate=spec.fps)
        video.width, video.height = spec.width, spec.height
        video.pix_fmt = "yuv420p"
        video.bit_rate = 200_000
        gop_frames = spec.gop_frames if spec.keyframes_s is None else 100_000
        options = {"g": str(gop_frames), "keyint_min": str(min(gop_frames, 250))}
        if spec.video_codec == "libx264":
            options.update({"bf": str(spec.bframes), "sc_threshold": "0", "preset": "ultrafast"})
            if spec.bframes:
                options["preset"] = "veryfast"
        if spec.video_codec == "libx265":
            options = {
                "preset": "ultrafast",
                "x265-params": f"keyint={spec.gop_frames}:log-level=0",
            }
        if spec.video_codec.startswith("libvpx"):
            options.update({"deadline": "realtime", "cpu-used": "8"})
        if spec.keyframes_s is not None:
            options["forced-idr"] = "1"
        options.update(dict(spec.video_options))
        video.codec_context.options = options
    if spec.audio_codec:
        audio = out.add_stream(spec.audio_codec, rate=spec.sample_rate)
        audio.layout = "stereo"
    if video is not None:
        frame_count = round(spec.duration_s * spec.fps)
        forced = {round(t * spec.fps) for t in spec.keyframes_s or ()} | {0}
        graph = f"testsrc2=size={spec.width}x{spec.height}:rate={spec.fps}"
        with av.open(graph, format="lavfi") as source:
            for index, frame in enumerate(source.decode(video=0)):
                if index >= frame_count:
                    break
                frame = frame.reformat(format="yuv420p")
                frame.pts = index
                frame.time_base = Fraction(1, spec.fps)
                forced_key = spec.keyframes_s is not None and index in forced
                frame.pict_type = (
                    av.video.frame.PictureType.I if forced_key else av.video.frame.PictureType.NONE
                )
                for packet in video.encode(frame):
                    out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)
    if audio is not None:
        frame_size = audio.codec_context.frame_size or 1024
        total = round(spec.duration_s * spec.sample_rate)
        fmt = audio.codec_context.format.name
        position = 0
        while position < total:
            count = min(frame_size, total - position)
            t = np.arange(position, position + count) / spec.sample_rate
            tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
            planar = np.tile(tone, (2, 1))
            frame = av.AudioFrame.from_ndarray(planar, format="fltp", layout="stereo")
            frame.sample_rate = spec.sample_rate
            frame.pts = position
            frame.time_base = Fraction(1, spec.sample_rate)
            if fmt != "fltp":
                resampler = av.AudioResampler(format=fmt, layout="stereo", rate=spec.sample_rate)
                converted = resampler.resample(frame)
            else:
                converted = [frame]
            for item in converted:
                for packet in audio.encode(item):
                    out.mux(packet)
            position += count
        for packet in audio.encode(None):
            out.mux(packet)
    out.close()
    return path


@dataclass(frozen=True)
class Decoded:
    video_frames: int
    audio_samples: int
    video_pts_s: list[float]
    audio_pts_s: list[float]
    keyframe_first: bool  # the first decoded video frame is a keyframe
    video_duration_s: float


def decode_fmp4(data: bytes) -> Decoded:
    """Decode a whole fragmented MP4 (init + chunks) from memory and count what comes out."""
    video_frames = 0
    audio_samples = 0
    video_pts: list[float] = []
    audio_pts: list[float] = []
    first_key: bool | None = None
    with av.open(io.BytesIO(data), mode="r", format="mp4") as container:
        streams = [*container.streams.video[:1], *container.streams.audio[:1]]
        for packet in container.demux(streams):
            for frame in packet.decode():
                if packet.stream.type == "video":
                    if first_key is None:
                        first_key = bool(frame.key_frame)
                    video_frames += 1
                    if frame.time is not None:
                        video_pts.append(float(frame.time))
                else:
                    audio_samples += frame.samples
                    if frame.time is not None:
                        audio_pts.append(float(frame.time))
    duration = 0.0
    if len(video_pts) > 1:
        ordered = sorted(video_pts)
        duration = ordered[-1] - ordered[0] + (ordered[-1] - ordered[-2])
    return Decoded(
        video_frames=video_frames,
        audio_samples=audio_samples,
        video_pts_s=video_pts,
        audio_pts_s=audio_pts,
        keyframe_first=bool(first_key),
        video_duration_s=duration,
    )


def keyframe_times(path: Path) -> list[float]:
    """Presentation times (s) of the video keyframes in a media file, in order."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return sorted(
            float(p.pts * p.time_base)
            for p in container.demux(stream)
            if p.is_keyframe and p.pts is not None
        )


def variable_gop_times(
    duration_s: float, seed: int, low_s: float = 1.0, high_s: float = 8.0
) -> tuple[float, ...]:
    """Irregular keyframe times, GOPs between low_s and high_s (scene cuts), seeded."""
    import random

    rng = random.Random(seed)
    times = [0.0]
    while True:
        nxt = round(times[-1] + rng.uniform(low_s, high_s), 2)
        if nxt >= duration_s:
            return tuple(times)
        times.append(nxt)


def count_source(path: Path) -> Decoded:
    """The same counts for an ordinary media file, to compare with what we produced."""
    return decode_fmp4(path.read_bytes()) if path.suffix == ".mp4" else _decode_any(path)


def _decode_any(path: Path) -> Decoded:
    video_frames = 0
    audio_samples = 0
    video_pts: list[float] = []
    with av.open(str(path)) as container:
        streams = [*container.streams.video[:1], *container.streams.audio[:1]]
        for packet in container.demux(streams):
            for frame in packet.decode():
                if packet.stream.type == "video":
                    video_frames += 1
                    if frame.time is not None:
                        video_pts.append(float(frame.time))
                else:
                    audio_samples += frame.samples
    return Decoded(video_frames, audio_samples, video_pts, [], True, 0.0)


class PartialHttpServer:
    """An HTTP server on 127.0.0.1 that sends the first `send_bytes` of `body`, then either stalls
    (keeps the connection open, sending nothing) or dies (closes it): a live source gone wrong."""

    def __init__(self, body: bytes, send_bytes: int, mode: str = "stall") -> None:
        import socket

        self.body = body
        self.send_bytes = send_bytes
        self.mode = mode
        self._stop = threading.Event()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(8)
        self._sock.settimeout(0.2)
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/live.ts"
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> PartialHttpServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: Any) -> None:
        with conn:
            try:
                conn.settimeout(2)
                conn.recv(65536)  # the request; its content does not matter
                head = (
                    "HTTP/1.1 200 OK\r\nContent-Type: video/mp2t\r\n"
                    f"Content-Length: {len(self.body)}\r\nConnection: close\r\n\r\n"
                )
                conn.sendall(head.encode() + self.body[: self.send_bytes])
                if self.mode == "stall":
                    self._stop.wait(30)
            except OSError:
                pass
