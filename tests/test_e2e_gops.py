"""Real broadcasts of irregular input, end to end: `streamer broadcast FILE --loop` to a relay and
watchers, each its own process on 127.0.0.1.

The inputs are the ones encoders send (made here with PyAV): keyframes every 1 s for 6 s and every
2 s after (copied: 2 s chunks), and scene-cut GOPs of 1-8 s kept as they are (`--transcode
never`: chunks of any length). Before chunk lengths were followed end to end, viewers of the first
played 7-8 chunks and then nothing (continuity ~0.2) and a late joiner never started.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import time
from pathlib import Path

import pytest
from media_helpers import ClipSpec, make_clip, variable_gop_times
from test_e2e_swarm import start_broadcast_of, stop, streamer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]


def watch(url: str, tmp: Path, name: str, duration_s: float) -> tuple[subprocess.Popen[str], Path]:
    stats = tmp / f"{name}.json"
    proc = streamer(
        "watch",
        "--server",
        url,
        "--channel",
        "live",
        "--duration",
        str(duration_s),
        "--stats-json",
        str(stats),
    )
    return proc, stats


def run_broadcast(
    tmp: Path,
    procs: list[subprocess.Popen[str]],
    clip: Path,
    *extra: str,
    early_s: float,
    late_s: float,
) -> list[dict[str, object]]:
    """A broadcaster of clip (--loop), a relay, a watcher from the start and one joining after
    the first pass over the clip; returns the watchers' stats."""
    cast, url = start_broadcast_of(str(clip), tmp, tmp / "k.key", "--loop", *extra)
    procs.append(cast)
    relay = streamer("relay", "--server", url, "--channel", "live")
    procs.append(relay)
    first, first_stats = watch(url, tmp, "early", early_s)
    procs.append(first)
    time.sleep(late_s)
    second, second_stats = watch(url, tmp, "late", early_s - late_s)
    procs.append(second)
    for proc in (first, second):
        _, err = proc.communicate(timeout=early_s + 40)
        assert proc.returncode == 0, err
    for proc in (relay, cast):
        rc, err = stop(proc)
        assert rc == 0 and "Traceback" not in err, err
    return [json.loads(path.read_text()) for path in (first_stats, second_stats)]


def test_gops_turning_from_one_to_two_seconds_play_on(
    tmp_path: Path,
    procs: list[subprocess.Popen[str]],
) -> None:
    keyframes = (0, 1, 2, 3, 4, 5, 6, 8, 10)
    clip = make_clip(
        tmp_path / "gop-1-then-2.mp4",
        ClipSpec(duration_s=12.0, keyframes_s=tuple(float(t) for t in keyframes)),
    )
    stats = run_broadcast(tmp_path, procs, clip, early_s=30.0, late_s=14.0)
    early, late = stats
    # ~30 s of watching at 1-2 s a chunk (once the old bug struck, nothing played after the
    # 7th or 8th), and the late joiner's ~16 s of 2 s chunks: every chunk from the start played.
    assert early["chunks_played"] >= 15, early
    assert late["chunks_played"] >= 7, late
    for st in stats:
        assert st["chunks_missed"] == 0, st
        assert st["continuity"] >= 0.99, st


def test_scene_cut_gops_of_one_to_eight_seconds_kept_as_they_are_play(
    tmp_path: Path,
    procs: list[subprocess.Popen[str]],
) -> None:
    keyframes = variable_gop_times(16.0, seed=7)
    assert max(b - a for a, b in itertools.pairwise(keyframes)) > 4.0
    assert min(b - a for a, b in itertools.pairwise(keyframes)) < 2.0
    clip = make_clip(tmp_path / "scene-cuts.mp4", ClipSpec(duration_s=16.0, keyframes_s=keyframes))
    stats = run_broadcast(tmp_path, procs, clip, "--transcode", "never", early_s=34.0, late_s=17.0)
    for st in stats:
        assert st["chunks_played"] >= 3, st
        assert st["chunks_missed"] == 0, st
        assert st["continuity"] >= 0.99, st
        # Long chunks come late by their extra length: playout re-anchors, it never skips.
        assert st["lag_s_p95"] < 12.0, st
