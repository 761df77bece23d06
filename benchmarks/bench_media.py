"""Media pipeline speed: remux CPU per second of video, and 720p30 transcode speed vs real time.

- remux: media/sample.mp4 (640x360 H.264 + AAC) looped for --remux-seconds, copied into fMP4
  chunks; CPU seconds (this process, user+sys) per second of media.
- transcode: a 720p30 H.264 + AAC clip made first (not timed) with a 10 s keyframe interval, so
  `auto` must re-encode it to 1 s GOPs with libx264 (preset veryfast, zerolatency) at 1 Mbit/s
  and AAC; speed = seconds of media / wall seconds (live needs >= 1x).
- switch: a 720p30 H.264 + AAC clip with 1 s GOPs for its first 6 s (the probe sees a copyable
  input) and 10 s GOPs after: copied first, then the GOP watcher switches to re-encoding from the
  first long GOP's keyframe (libx264, parameter sets in band, into the copied track).

Each case runs --repeats times; the median is printed.

    .venv/bin/python benchmarks/bench_media.py
"""

from __future__ import annotations

import argparse
import logging
import platform
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from streamer.media import MediaOptions, open_media  # noqa: E402

SAMPLE = ROOT / "media" / "sample.mp4"


def make_720p(path: Path, seconds: float, keyframes_s: tuple[float, ...] = ()) -> None:
    """A 1280x720 30 fps H.264 (10 s GOP, or keyframes at exactly `keyframes_s`, ultrafast) +
    AAC test clip."""
    out = av.open(str(path), mode="w")
    video = out.add_stream("libx264", rate=30)
    video.width, video.height, video.pix_fmt = 1280, 720, "yuv420p"
    video.bit_rate = 3_000_000
    options = {"preset": "ultrafast", "g": "300", "sc_threshold": "0"}
    if keyframes_s:
        options.update({"g": "100000", "forced-idr": "1"})
    video.codec_context.options = options
    forced = {round(t * 30) for t in keyframes_s}
    audio = out.add_stream("aac", rate=48000)
    audio.layout = "stereo"
    graph = f"testsrc2=size=1280x720:rate=30:duration={seconds}"
    with av.open(graph, format="lavfi") as source:
        for index, frame in enumerate(source.decode(video=0)):
            frame = frame.reformat(format="yuv420p")
            frame.pts, frame.time_base = index, Fraction(1, 30)
            frame.pict_type = (
                av.video.frame.PictureType.I if index in forced else av.video.frame.PictureType.NONE
            )
            for packet in video.encode(frame):
                out.mux(packet)
    for packet in video.encode(None):
        out.mux(packet)
    resampler = av.AudioResampler(format="fltp", layout="stereo", rate=48000, frame_size=1024)
    with av.open(f"sine=frequency=440:sample_rate=48000:duration={seconds}", format="lavfi") as src:
        for frame in src.decode(audio=0):
            for item in resampler.resample(frame):
                for packet in audio.encode(item):
                    out.mux(packet)
    for packet in audio.encode(None):
        out.mux(packet)
    out.close()


def run_once(source: str, options: MediaOptions) -> tuple[float, float, float, int, bool]:
    """(media seconds, wall seconds, CPU seconds, bytes, video transcoded at any point)."""
    wall0, cpu0 = time.perf_counter(), time.process_time()
    media_s = 0.0
    size = 0
    with open_media(source, options) as stream:
        transcoded = stream.info.video_transcoded
        for chunk in stream.chunks():
            media_s = chunk.start_s + chunk.duration_s
            size += chunk.size_bytes
        transcoded = transcoded or stream.gop_action == "switch"
    return media_s, time.perf_counter() - wall0, time.process_time() - cpu0, size, transcoded


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--remux-seconds", type=float, default=240.0)
    parser.add_argument("--transcode-seconds", type=float, default=20.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    logging.getLogger("streamer.media").setLevel(logging.ERROR)  # the switch case's one warning

    rows = []
    remux = [
        run_once(str(SAMPLE), MediaOptions(loop=True, duration_s=args.remux_seconds))
        for _ in range(args.repeats)
    ]
    media_s, wall_s, cpu_s, size, transcoded = sorted(remux, key=lambda r: r[2])[len(remux) // 2]
    assert not transcoded
    rows.append(("remux 640x360 H.264/AAC", media_s, wall_s, cpu_s, size))

    with tempfile.TemporaryDirectory() as folder:
        clip = Path(folder) / "720p30.mp4"
        make_720p(clip, args.transcode_seconds)
        runs = [
            run_once(str(clip), MediaOptions(video_bitrate_bps=1_000_000))
            for _ in range(args.repeats)
        ]
        media_s, wall_s, cpu_s, size, transcoded = sorted(runs, key=lambda r: r[1])[len(runs) // 2]
        assert transcoded
        rows.append(("transcode 720p30 -> x264 1M", media_s, wall_s, cpu_s, size))

        turning = Path(folder) / "720p30_turns_long.mp4"
        keys = (0.0, 1.0, 2.0, 3.0, 4.0, 5.0, *range(6, int(args.transcode_seconds), 10))
        make_720p(turning, args.transcode_seconds, tuple(float(k) for k in keys))
        runs = [
            run_once(str(turning), MediaOptions(video_bitrate_bps=1_000_000))
            for _ in range(args.repeats)
        ]
        media_s, wall_s, cpu_s, size, switched = sorted(runs, key=lambda r: r[1])[len(runs) // 2]
        assert switched
        rows.append(("switch 720p30 copy -> x264 1M", media_s, wall_s, cpu_s, size))

    print(f"machine: {platform.machine()}, {platform.python_version()}, PyAV {av.__version__}")
    print(
        f"{'case':30} {'media s':>8} {'wall s':>8} {'CPU s':>8} {'CPU s/media s':>14} "
        f"{'x real time':>12} {'Mbit/s':>7}"
    )
    for name, media, wall, cpu, nbytes in rows:
        print(
            f"{name:30} {media:8.1f} {wall:8.2f} {cpu:8.2f} {cpu / media:14.4f} "
            f"{media / wall:12.1f} {8 * nbytes / media / 1e6:7.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
