"""End to end with real processes: `python -m streamer broadcast/relay/watch` on 127.0.0.1.

Slow tests (real media, real aiortc between processes); each is bounded by its timeout. The error
tests at the end are quick: every failure must be one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCE = "testsrc:256x144@15"
STATS_FIELDS = {
    "watch": (
        "startup_s",
        "continuity",
        "lag_s_p50",
        "lag_s_p95",
        "chunks_played",
        "chunks_missed",
        "bytes_from_source",
        "bytes_from_peers",
        "bytes_uploaded",
    ),
    "relay": ("bytes_uploaded", "bytes_from_source", "bytes_from_peers"),
    "broadcast": ("bytes_uploaded", "stream_bytes", "chunks_released", "peers_served"),
}


def streamer(*args: str, **kwargs: object) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen(  # type: ignore[call-overload]
        [sys.executable, "-m", "streamer", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def start_broadcast(tmp: Path, key: Path, *extra: str) -> tuple[subprocess.Popen[str], str]:
    chunking = ("--chunk-seconds", "0.5", "--video-bitrate", "300k")
    return start_broadcast_of(SOURCE, tmp, key, *chunking, *extra)


def start_broadcast_of(
    source: str, tmp: Path, key: Path, *extra: str
) -> tuple[subprocess.Popen[str], str]:
    """`streamer broadcast SOURCE` with an embedded server; the process and the server URL."""
    proc = streamer("broadcast", source, "--port", "0", "--key", str(key), *extra)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("watch: http://127.0.0.1:"), line + proc.communicate(timeout=5)[1]
    url = line.split()[1].rsplit("/watch/", 1)[0]
    return proc, url


def stop(proc: subprocess.Popen[str], timeout_s: float = 10.0) -> tuple[int, str]:
    """SIGTERM, then the exit code and stderr (the process must leave on its own)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=timeout_s)
    return proc.returncode, err


def decoded_frames(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_broadcast_relay_and_watchers_as_processes(
    tmp_path: Path, procs: list[subprocess.Popen[str]]
) -> None:
    cast, url = start_broadcast(
        tmp_path, tmp_path / "k.key", "--stats-json", str(tmp_path / "b.json")
    )
    procs.append(cast)
    relay = streamer(
        "relay", "--server", url, "--channel", "live", "--stats-json", str(tmp_path / "r.json")
    )
    procs.append(relay)
    time.sleep(1.0)
    watchers = []
    for i in range(2):
        watcher = streamer(
            "watch",
            "--server",
            url,
            "--channel",
            "live",
            "--duration",
            "8",
            "--output",
            str(tmp_path / f"w{i}.mp4"),
            "--stats-json",
            str(tmp_path / f"w{i}.json"),
        )
        procs.append(watcher)
        watchers.append(watcher)
        time.sleep(0.5)
    for watcher in watchers:
        _, err = watcher.communicate(timeout=30)
        assert watcher.returncode == 0, err
    relay_rc, relay_err = stop(relay)
    cast_rc, cast_err = stop(cast)
    assert relay_rc == 0, relay_err
    assert cast_rc == 0, cast_err
    assert "Traceback" not in relay_err + cast_err

    stats = {
        "broadcast": json.loads((tmp_path / "b.json").read_text()),
        "relay": json.loads((tmp_path / "r.json").read_text()),
    }
    for name, fields in STATS_FIELDS.items():
        for i, st in enumerate(
            [json.loads((tmp_path / f"w{i}.json").read_text()) for i in range(2)]
            if name == "watch"
            else [stats[name]]
        ):
            missing = [f for f in fields if f not in st]
            assert not missing, (name, i, missing)
            if name == "watch":
                assert st["chunks_played"] >= 8, st
                assert st["continuity"] >= 0.9, st
                assert decoded_frames(tmp_path / f"w{i}.mp4") >= 8 * 7  # >= 8 chunks x 0.5 s
                stats[f"w{i}"] = st
    assert stats["relay"]["bytes_from_source"] > 0
    assert stats["relay"]["bytes_uploaded"] > 0
    watch_stats = [stats["w0"], stats["w1"]]
    from_peers = sum(st["bytes_from_peers"] for st in watch_stats)
    from_source = sum(st["bytes_from_source"] for st in watch_stats)
    assert from_peers > from_source, watch_stats
    assert stats["broadcast"]["stream_bytes"] > 0
    assert stats["broadcast"]["bytes_uploaded"] < 2.5 * stats["broadcast"]["stream_bytes"]
    # Per neighbour, the ICE path: on loopback without STUN/TURN every pair is host-host.
    for st in watch_stats:
        assert st["neighbour_paths"], st
        for path in st["neighbour_paths"].values():
            assert path["pair_type"] == "host" and path["protocol"] == "udp", path
        assert set(st["ice_pair_types"]) == {"host"}, st
        # ...and how each SCTP association recovered; on loopback nothing is lost.
        for path in st["neighbour_paths"].values():
            assert path["sctp"]["t3_timeouts"] == 0 and path["sctp"]["rto_ms"] >= 250, path
            # ...and where its setup's time went, step by step.
            steps = path["setup_ms"]
            assert 0 <= steps["described"] <= steps["ice"] <= steps["dtls"] <= steps["open"], path
    recovery = stats["broadcast"]["sctp_recovery"]
    assert recovery["associations"] >= 2 and 0 < recovery["longest_ack_ms"] < 5000, recovery
    for st in [stats["broadcast"], stats["relay"], *watch_stats]:
        assert 0 <= st["loop_lag"]["p99_ms"] <= 1000, st["loop_lag"]


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_a_restarted_broadcaster_with_the_same_key_is_watched_on(
    tmp_path: Path, procs: list[subprocess.Popen[str]]
) -> None:
    key = tmp_path / "k.key"
    server = streamer("serve", "--port", "0")
    procs.append(server)
    # A separate server, so the broadcaster can go away and come back.
    url = _read_url(server)
    first = streamer(
        "broadcast",
        SOURCE,
        "--server",
        url,
        "--key",
        str(key),
        "--chunk-seconds",
        "0.5",
        "--video-bitrate",
        "300k",
    )
    procs.append(first)
    time.sleep(1.5)
    watcher = streamer(
        "watch", "--server", url, "--duration", "12", "--stats-json", str(tmp_path / "w.json")
    )
    procs.append(watcher)
    time.sleep(4.0)
    rc, err = stop(first)
    assert rc == 0, err
    second = streamer(
        "broadcast",
        SOURCE,
        "--server",
        url,
        "--key",
        str(key),
        "--chunk-seconds",
        "0.5",
        "--video-bitrate",
        "300k",
    )
    procs.append(second)
    _, err = watcher.communicate(timeout=30)
    assert watcher.returncode == 0, err
    stop(second)
    st = json.loads((tmp_path / "w.json").read_text())
    # ~4 s before the restart and ~6 s after it at 2 chunks/s: playing resumed after it, and
    # the seqs the restart skipped (nobody ever announced them) were not stalled for.
    assert st["chunks_played"] >= 14, st
    assert st["stall_s"] < 1.0, st
    assert st["core_restarts"] == 0, st  # same key, same seq space: no rebuild needed
    # The seqs the restart skipped never existed: no loss (at most the old session's last chunk,
    # cut short by its SIGTERM). The new session's chunks are due by their own media times.
    assert st["chunks_missed"] <= 1, st
    print(f"restart: picture paused {st['longest_pause_s']:.2f} s, {st['chunks_missed']} missed")
    assert st["longest_pause_s"] < 5.0, st


def _read_url(proc: subprocess.Popen[str]) -> str:
    """`streamer serve` prints its URL as the last word of its first stdout line."""
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert "http://127.0.0.1:" in line, line
    return line.split()[-1]


def one_line_error(proc: subprocess.Popen[str]) -> str:
    _, err = proc.communicate(timeout=30)
    assert proc.returncode != 0
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.timeout(60)
def test_unreachable_server_is_one_line() -> None:
    line = one_line_error(streamer("watch", "--server", "http://127.0.0.1:9", "--channel", "x"))
    assert "cannot reach the signaling server" in line


@pytest.mark.timeout(60)
def test_bad_input_file_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(2000))
    line = one_line_error(
        streamer("broadcast", str(bad), "--port", "0", "--key", str(tmp_path / "k.key"))
    )
    assert "broken.mp4" in line


@pytest.mark.timeout(60)
def test_channel_owned_by_another_key_is_one_line(
    tmp_path: Path, procs: list[subprocess.Popen[str]]
) -> None:
    owner, url = start_broadcast(tmp_path, tmp_path / "a.key")
    procs.append(owner)
    intruder = streamer("broadcast", SOURCE, "--server", url, "--key", str(tmp_path / "b.key"))
    line = one_line_error(intruder)
    assert "belongs to another broadcaster" in line
    rc, err = stop(owner)
    assert rc == 0, err
