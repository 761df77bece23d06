"""Push ingest end to end: an encoder process pushes RTMP to `streamer broadcast --listen`, a
`streamer watch` viewer plays it, the encoder is killed and comes back 5 s later.

Slow (real time): the pusher is paced like a live encoder. Everything listens on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from media_helpers import ClipSpec, make_clip

ROOT = Path(__file__).resolve().parent.parent
PUSHER = Path(__file__).resolve().parent / "rtmp_pusher.py"
KEY = "test-key-1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, *args],
        cwd=ROOT,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def read_line(proc: subprocess.Popen[str], prefix: str) -> str:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith(prefix), (line, proc.poll())
    return line.strip()


def latest_seq(base_url: str) -> int | None:
    with urllib.request.urlopen(f"{base_url}/api/channels/live", timeout=2) as reply:
        value = json.load(reply).get("latest_seq")
        return None if value is None else int(value)


def wait_for_seq(base_url: str, at_least: int, timeout_s: float) -> float:
    """Poll the server until the channel's live edge reaches `at_least`; when it did."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        seq = latest_seq(base_url)
        if seq is not None and seq >= at_least:
            return time.monotonic()
        time.sleep(0.1)
    raise AssertionError(f"live edge did not reach {at_least} (at {latest_seq(base_url)})")


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_rtmp_push_is_watched_and_survives_the_encoder_reconnecting(
    tmp_path: Path, procs: list[subprocess.Popen[str]]
) -> None:
    clip = make_clip(tmp_path / "enc.mp4", ClipSpec(duration_s=40.0, width=256, height=144))
    port = free_port()
    listen = f"rtmp://127.0.0.1:{port}/live"
    broadcaster = spawn(
        "-m", "streamer", "broadcast", "--listen", listen, "--stream-key", KEY,
        "--port", "0", "--key", str(tmp_path / "b.key"), "--status-interval", "1",
        "--stats-json", str(tmp_path / "b.json"),
    )  # fmt: skip
    procs.append(broadcaster)
    base_url = read_line(broadcaster, "watch: ").split()[1].rsplit("/watch/", 1)[0]
    assert read_line(broadcaster, "encoder server: ") == f"encoder server: {listen}"
    assert read_line(broadcaster, "stream key: ") == f"stream key: {KEY}"

    encoder = spawn(str(PUSHER), str(clip), f"{listen}/{KEY}")
    procs.append(encoder)
    read_line(encoder, "connected")
    viewer = spawn(
        "-m", "streamer", "watch", "--server", base_url, "--duration", "18",
        "--stats-json", str(tmp_path / "w.json"),
    )  # fmt: skip
    procs.append(viewer)
    # A second viewer stays on through the outage and after it.
    through = spawn(
        "-m", "streamer", "watch", "--server", base_url, "--duration", "38",
        "--stats-json", str(tmp_path / "w2.json"),
    )  # fmt: skip
    procs.append(through)
    _, viewer_err = viewer.communicate(timeout=40)
    assert viewer.returncode == 0, viewer_err
    watched = json.loads((tmp_path / "w.json").read_text())
    assert watched["chunks_played"] >= 8, watched
    assert watched["continuity"] >= 0.99, watched
    print(f"viewer: continuity {watched['continuity']:.3f}, lag p50 {watched['lag_s_p50']:.2f} s")

    # The encoder dies (no goodbye), and is started again 5 s later.
    encoder.send_signal(signal.SIGKILL)
    encoder.communicate(timeout=5)
    time.sleep(5.0)  # the scenario: an outage of 5 s
    seq_before = latest_seq(base_url)
    assert seq_before is not None
    assert broadcaster.poll() is None
    encoder = spawn(str(PUSHER), str(clip), f"{listen}/{KEY}", "--seconds", "15")
    procs.append(encoder)
    read_line(encoder, "connected")
    first_keyframe_s = time.monotonic()
    # What the encoder sent before it died went out at once (all but its last 0.2 s): the next
    # seq holds media of the new push (seqs stay contiguous; its media time jumps by the outage).
    published_s = wait_for_seq(base_url, seq_before + 1, timeout_s=10.0)
    print(f"new chunks published {published_s - first_keyframe_s:.2f} s after the reconnect")
    assert published_s - first_keyframe_s <= 5.0
    _, through_err = through.communicate(timeout=40)
    assert through.returncode == 0, through_err
    after = json.loads((tmp_path / "w2.json").read_text())
    print(f"viewer through the outage: {after['chunks_played']} played, {after['continuity']:.3f}")
    # It waited at the live edge through the outage (the page says "paused") and plays the new
    # push too, without counting the pause as missed chunks.
    assert after["chunks_played"] >= watched["chunks_played"] + 5, after
    assert after["chunks_missed"] == 0 and after["continuity"] >= 0.99, after
    encoder.communicate(timeout=20)
    assert encoder.returncode == 0

    broadcaster.send_signal(signal.SIGTERM)
    _, err = broadcaster.communicate(timeout=15)
    assert broadcaster.returncode == 0, err
    assert "Traceback" not in err
    assert "encoder connected" in err
    assert err.count("the encoder is pushing again") == 1, err
    stats = json.loads((tmp_path / "b.json").read_text())
    assert stats["chunks_released"] >= 20, stats
