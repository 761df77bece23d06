"""Make media/sample.mp4: 24 s of a moving test pattern with a running clock, and a beeping tone.

H.264 High (yuv420p, 640x360, 30 fps, a keyframe every second) + AAC-LC stereo 48 kHz in MP4, so
`streamer` copies it without re-encoding. 24 s is a whole number of both video frames (720) and AAC
frames (1125 of 1024 samples), so `--loop` is seamless. Uses only PyAV (FFmpeg's testsrc has its own
clock digits, so no drawtext/fonts are needed).

    .venv/bin/python media/make_sample.py [OUT.mp4]
"""

from __future__ import annotations

import sys
from fractions import Fraction
from pathlib import Path

import av

DURATION_S = 24
FPS = 30
WIDTH, HEIGHT = 640, 360
SAMPLE_RATE = 48000
VIDEO_BITRATE_BPS = 450_000
AUDIO_BITRATE_BPS = 64_000
VBV_KBPS = VIDEO_BITRATE_BPS // 1000  # cap the peaks: chunks stay near the average size


def make_sample(path: Path) -> None:
    out = av.open(str(path), mode="w", options={"movflags": "+faststart"})
    video = out.add_stream("libx264", rate=FPS)
    video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    video.bit_rate = VIDEO_BITRATE_BPS
    video.codec_context.options = {
        "preset": "slow",
        "profile": "high",
        "g": str(FPS),
        "keyint_min": str(FPS),
        "sc_threshold": "0",
        "x264-params": f"vbv-maxrate={VBV_KBPS}:vbv-bufsize={VBV_KBPS}",
    }
    audio = out.add_stream("aac", rate=SAMPLE_RATE)
    audio.layout = "stereo"
    audio.bit_rate = AUDIO_BITRATE_BPS

    # testsrc: colour bars, a scrolling gradient and a clock (seconds.tenths) drawn by FFmpeg.
    graph = f"testsrc=size={WIDTH}x{HEIGHT}:rate={FPS}:duration={DURATION_S}"
    with av.open(graph, format="lavfi") as source:
        for index, frame in enumerate(source.decode(video=0)):
            frame = frame.reformat(format="yuv420p")
            frame.pts = index
            frame.time_base = Fraction(1, FPS)
            frame.pict_type = av.video.frame.PictureType.NONE  # let x264 place the keyframes
            for packet in video.encode(frame):
                out.mux(packet)
    for packet in video.encode(None):
        out.mux(packet)

    # A 440 Hz tone that beeps (880 Hz) once a second, in step with the clock.
    tone = f"sine=frequency=440:beep_factor=2:sample_rate={SAMPLE_RATE}:duration={DURATION_S}"
    resampler = av.AudioResampler(format="fltp", layout="stereo", rate=SAMPLE_RATE, frame_size=1024)
    with av.open(tone, format="lavfi") as source:
        for frame in source.decode(audio=0):
            for chunk in resampler.resample(frame):
                for packet in audio.encode(chunk):
                    out.mux(packet)
    for chunk in resampler.resample(None):
        for packet in audio.encode(chunk):
            out.mux(packet)
    for packet in audio.encode(None):
        out.mux(packet)
    out.close()


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("sample.mp4")
    make_sample(target)
    print(f"wrote {target} ({target.stat().st_size} bytes)")
