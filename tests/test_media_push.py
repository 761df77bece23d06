"""Push ingest at the pipeline level: `open_push` with encoder processes that vanish and return.

Slow (pushers are paced at real time). Pushers run in their own processes (FFmpeg's RTMP server
and client in one process hang) and connect to 127.0.0.1 only.
"""

from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from media_helpers import ClipSpec, decode_fmp4, make_clip

from streamer.media import Chunk, MediaOptions, open_push
from streamer.media.ingest import PushListener
from streamer.media.listen import parse_listen_url

PUSHER = Path(__file__).resolve().parent / "rtmp_pusher.py"
pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pusher(clip: Path, url: str, seconds: float = 1e9) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, str(PUSHER), str(clip), url, "--seconds", str(seconds)],
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "connected"
    return proc


class Collector:
    """Reads a push stream's chunks in a thread, noting when each arrived."""

    def __init__(self, listener: PushListener) -> None:
        self.listener = listener
        self.init: bytes = b""
        self.chunks: list[tuple[float, Chunk]] = []
        self.error: BaseException | None = None
        self.resumed_at_s = 0.0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            with open_push(self.listener, MediaOptions()) as stream:
                self.init = stream.info.init_segment
                for chunk in stream.chunks():
                    self.chunks.append((time.monotonic(), chunk))
                    self.resumed_at_s = stream.resumed_at_s
        except BaseException as error:  # reported by the test
            self.error = error

    def wait_for(self, count: int, timeout_s: float) -> float:
        deadline = time.monotonic() + timeout_s
        while len(self.chunks) < count:
            assert self.error is None, self.error
            assert time.monotonic() < deadline, f"{len(self.chunks)} chunks, wanted {count}"
            time.sleep(0.05)
        return time.monotonic()

    def stop(self) -> None:
        self.listener.interrupt()
        self._thread.join(15)
        assert not self._thread.is_alive()


def test_a_vanished_encoder_times_out_and_the_next_push_continues_the_timeline(
    tmp_path: Path,
) -> None:
    clip = make_clip(tmp_path / "enc.mp4", ClipSpec(duration_s=30.0, width=192, height=108))
    spec = parse_listen_url(f"rtmp://127.0.0.1:{free_port()}/live", "KEY")
    listener = PushListener(spec, read_timeout_s=2.0)
    collector = Collector(listener)
    first = pusher(clip, f"{spec.display_url}/KEY")
    collector.wait_for(3, timeout_s=15)
    # The encoder freezes: its connection stays open but nothing comes (a network that died).
    first.send_signal(signal.SIGSTOP)
    frozen_s = time.monotonic()
    deadline = frozen_s + 10
    while listener.connected:
        assert time.monotonic() < deadline, "a silent encoder was never given up on"
        time.sleep(0.05)
    assert time.monotonic() - frozen_s < 6.0  # the 2 s read timeout, plus what was buffered
    # What the encoder sent before it froze left when the push was given up on, not at the next
    # push: the chunk in flight came out about a read timeout after the freeze.
    tail_arrived_s, tail = collector.chunks[-1]
    assert tail_arrived_s - frozen_s > 1.0, (tail_arrived_s - frozen_s, tail.duration_s)
    before = len(collector.chunks)
    second = pusher(clip, f"{spec.display_url}/KEY", seconds=6)
    collector.wait_for(before + 4, timeout_s=15)
    second.wait(timeout=20)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=5)
    collector.stop()
    assert collector.error is None
    assert listener.pushes == 2
    chunks = [chunk for _, chunk in collector.chunks]
    assert [c.seq for c in chunks] == list(range(len(chunks)))  # seqs continue
    starts = [c.start_s for c in chunks]
    assert all(b > a for a, b in itertools.pairwise(starts))
    # The new push starts after the pause: media time kept pace with the wall clock.
    assert collector.resumed_at_s > chunks[before - 1].start_s + 1.0
    for chunk in chunks:
        assert decode_fmp4(collector.init + chunk.data).keyframe_first, chunk.seq
    whole = decode_fmp4(collector.init + b"".join(c.data for c in chunks))
    pts = sorted(whole.video_pts_s)
    assert all(b > a for a, b in itertools.pairwise(pts))
    assert whole.video_frames >= 30 * (len(chunks) - 2)


def test_a_push_with_long_gops_from_the_start_is_resplit_without_a_probe(tmp_path: Path) -> None:
    # OBS's "auto" keyframe interval: 250 frames (~8 s). No probe holds the start back: the
    # copy starts at once and the GOP watcher re-encodes from the first GOP's keyframe on.
    spec_clip = ClipSpec(duration_s=12.0, width=192, height=108, keyframes_s=(0.0, 8.0))
    clip = make_clip(tmp_path / "obs_auto.mp4", spec_clip)
    spec = parse_listen_url(f"rtmp://127.0.0.1:{free_port()}/live", "KEY")
    listener = PushListener(spec)
    collector = Collector(listener)
    encoder = pusher(clip, f"{spec.display_url}/KEY", seconds=7)
    connected_s = time.monotonic()
    first_s = collector.wait_for(1, timeout_s=10)
    assert first_s - connected_s < 4.0  # about a chunk plus FFmpeg's 1 s stream analysis
    collector.wait_for(5, timeout_s=15)
    encoder.wait(timeout=20)
    collector.stop()
    chunks = [chunk for _, chunk in collector.chunks]
    assert max(c.duration_s for c in chunks[:5]) < 1.15
    for chunk in chunks[:5]:
        assert decode_fmp4(collector.init + chunk.data).keyframe_first, chunk.seq
