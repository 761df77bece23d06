"""An encoder for the push-ingest tests: sends a media file to an RTMP server as FLV, as OBS does,
paced at real time. Run as a separate process (`python rtmp_pusher.py FILE URL [--seconds S]`):
FFmpeg's RTMP server and client in one process hang.

Modes: `--garbage` sends random bytes after the TCP connect instead of RTMP.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from urllib.parse import urlsplit

import av


def push(source: str, url: str, seconds: float, retry_s: float) -> int:
    """Returns the number of packets sent; retries the connect for `retry_s` (server not up)."""
    deadline = time.monotonic() + retry_s
    while True:
        try:
            out = av.open(url, mode="w", format="flv")
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    print("connected", flush=True)  # the first packet (a keyframe) follows at once
    sent = 0
    with av.open(source) as inp:
        video = inp.streams.video[0]
        audio = inp.streams.audio[0] if inp.streams.audio else None
        video_out = out.add_stream_from_template(video)
        audio_out = out.add_stream_from_template(audio) if audio is not None else None
        started = time.monotonic()
        first: float | None = None
        for packet in inp.demux([s for s in (video, audio) if s is not None]):
            if packet.dts is None:
                continue
            t = float(packet.dts * packet.time_base)
            first = t if first is None else first
            if t - first >= seconds:
                break
            delay = started + (t - first) - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            packet.stream = video_out if packet.stream.type == "video" else audio_out
            out.mux(packet)
            sent += 1
    out.close()
    return sent


def garbage(url: str) -> None:
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port or 1935), timeout=5) as sock:
        sock.sendall(os.urandom(20_000))
        time.sleep(0.5)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("source")
    parser.add_argument("url")
    parser.add_argument("--seconds", type=float, default=1e9)
    parser.add_argument("--retry", type=float, default=10.0)
    parser.add_argument("--garbage", action="store_true")
    args = parser.parse_args()
    if args.garbage:
        garbage(args.url)
        return 0
    sent = push(args.source, args.url, args.seconds, args.retry)
    print(f"sent {sent}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
