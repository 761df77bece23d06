"""Run a real swarm on 127.0.0.1: 1 broadcaster, R relays, N watchers, each its own process.

Why separate processes: that is how the swarm runs (each peer its own aiortc stack and event
loop), and it charges every process's CPU to this machine honestly. Joins are staggered
(`stagger_s`): opening many WebRTC connections at once is slow. Every figure comes from the
processes' own `--stats-json` files; the timelines (source upload rate, each watcher's lag) come
from their status lines, printed every second to their logs.
"""

from __future__ import annotations

import json
import select
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from streamer.bench.figures import percentile, summarise_viewers
from streamer.bench.procs import Child, ProcessGroup
from streamer.bench.statusline import Status, last_status
from streamer.errors import UserError

Progress = Callable[[str], None]
STATUS_INTERVAL_S = 1.0
START_TIMEOUT_S = 60.0
"""The broadcaster must print its watch URL within this (it opens and probes the clip first)."""
EXIT_GRACE_S = 60.0
"""Watchers must exit this long after their --duration, or they are stopped."""


def load_json_object(path: Path) -> dict[str, Any] | None:
    """A stats file's JSON object (None: missing, unreadable, or not an object)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _watch_url(child: Child, timeout_s: float) -> str:
    """The server base URL from the broadcaster's 'watch: URL/watch/CHANNEL' line."""
    stdout = child.popen.stdout
    assert stdout is not None
    ready, _, _ = select.select([stdout], [], [], timeout_s)
    line = stdout.readline().decode("utf-8", "replace") if ready else ""
    if not line.startswith("watch: "):
        raise UserError(
            "the broadcaster did not start: " + child.log_tail(400).strip().replace("\n", " | ")
        )
    return line.split()[1].rsplit("/watch/", 1)[0]


def run_swarm(
    clip: Path,
    workdir: Path,
    *,
    peers: int,
    relays: int,
    duration_s: float,
    stagger_s: float,
    chunk_seconds: float,
    transcode: str = "never",
    warmup_s: float = 2.0,
    progress: Progress = lambda line: None,
) -> dict[str, Any]:
    """Figures, per-process stats and timelines of one swarm run (every child stopped after).

    transcode: the broadcaster's --transcode (`never` for a packaged clip; an input broadcast as
    it is gets what a broadcaster would use)."""
    common = ["--status-interval", str(STATUS_INTERVAL_S)]
    timeline: dict[str, Any] = {
        "t_s": [],
        "source_bps": [],
        "relay_bps": [],
        "viewer_lag_s": [],
    }
    with ProcessGroup(workdir) as group:
        started_s = time.monotonic()
        cast = group.spawn(
            "broadcast",
            "broadcast",
            str(clip),
            "--loop",
            "--transcode",
            transcode,
            "--port",
            "0",
            "--key",
            str(workdir / "bench.key"),
            "--chunk-seconds",
            str(chunk_seconds),
            "--stats-json",
            str(workdir / "broadcast.json"),
            *common,
            stdout_pipe=True,
        )
        url = _watch_url(cast, START_TIMEOUT_S)
        progress(f"swarm: broadcaster on {url}")
        relay_children = [
            group.spawn(
                f"relay{i}",
                "relay",
                "--server",
                url,
                "--stats-json",
                str(workdir / f"relay{i}.json"),
                *common,
            )
            for i in range(relays)
        ]
        time.sleep(warmup_s)
        watchers: list[Child] = []
        last_status: dict[str, Status] = {}
        next_join_s = time.monotonic()
        next_sample_s = time.monotonic() + STATUS_INTERVAL_S
        deadline_s = time.monotonic() + peers * stagger_s + duration_s + EXIT_GRACE_S
        while len(watchers) < peers or any(w.popen.poll() is None for w in watchers):
            now = time.monotonic()
            if now > deadline_s:
                progress("swarm: watchers overran their duration; stopping them")
                break
            if len(watchers) < peers and now >= next_join_s:
                i = len(watchers)
                watchers.append(
                    group.spawn(
                        f"watch{i}",
                        "watch",
                        "--server",
                        url,
                        "--duration",
                        str(duration_s),
                        "--stats-json",
                        str(workdir / f"watch{i}.json"),
                        *common,
                    )
                )
                next_join_s = now + stagger_s
            if now >= next_sample_s:
                next_sample_s = now + STATUS_INTERVAL_S
                _sample(group, last_status, timeline, now - started_s, relay_children, watchers)
                progress(_progress_line(now - started_s, cast, watchers, peers, last_status))
            time.sleep(0.05)
        group.stop(watchers)
        group.stop([*relay_children, cast])
        wall_s = time.monotonic() - started_s
    return _collect(workdir, peers, relays, cast, relay_children, timeline, wall_s)


def _sample(
    group: ProcessGroup,
    last: dict[str, Status],
    timeline: dict[str, Any],
    t_s: float,
    relays: list[Child],
    watchers: list[Child],
) -> None:
    for child in group.children:
        status = last_status(child.read_new_log())
        if status is not None:
            last[child.name] = status
        if child.popen.poll() is None:
            child.sample_cpu_s()
    source = last.get("broadcast")
    timeline["t_s"].append(round(t_s, 2))
    timeline["source_bps"].append(source.out_bps if source else None)
    timeline["relay_bps"].append([_out(last.get(r.name)) for r in relays])
    timeline["viewer_lag_s"].append(
        [_lag(last.get(w.name)) if w.popen.poll() is None else None for w in watchers]
    )


def _out(status: Status | None) -> float | None:
    return None if status is None else status.out_bps


def _lag(status: Status | None) -> float | None:
    return None if status is None else status.lag_s


def _progress_line(
    t_s: float, cast: Child, watchers: list[Child], peers: int, last: dict[str, Status]
) -> str:
    source = last.get("broadcast")
    watching = [w for w in watchers if w.popen.poll() is None]
    lags = [s.lag_s for w in watching if (s := last.get(w.name)) and s.lag_s is not None]
    conts = [s.continuity for w in watching if (s := last.get(w.name)) and s.continuity is not None]
    lag_p50 = percentile(lags, 0.5)
    out = f"{source.out_bps / 1e6:6.2f} Mbit/s" if source else "     - Mbit/s"
    return (
        f"swarm {t_s:5.0f}s  watchers {len(watching)}/{peers}  source out {out}  "
        f"lag p50 {'-' if lag_p50 is None else f'{lag_p50:.1f}s'}  "
        f"cont min {'-' if not conts else f'{min(conts):.3f}'}"
    )


def _collect(
    workdir: Path,
    peers: int,
    relays: int,
    cast: Child,
    relay_children: list[Child],
    timeline: dict[str, Any],
    wall_s: float,
) -> dict[str, Any]:
    source = load_json_object(workdir / "broadcast.json") or {}
    per_viewer: list[dict[str, Any]] = []
    for i in range(peers):
        stats = load_json_object(workdir / f"watch{i}.json")
        # A watcher that died without stats stalled for the run: count it, with continuity 0.
        per_viewer.append(stats if stats is not None else {"continuity": 0.0, "missing": True})
    figures = summarise_viewers(per_viewer)
    figures.update(
        {
            "viewers": peers,
            "viewers_without_stats": sum(1 for s in per_viewer if s.get("missing")),
            "source_upload_ratio": source.get("upload_ratio"),
            "source_bytes_uploaded": source.get("bytes_uploaded"),
            "stream_bytes": source.get("stream_bytes"),
            "source_lifetime_s": source.get("duration_s"),
            "source_cpu_s": source.get("cpu_s", cast.last_cpu_s),
            "wall_s": round(wall_s, 1),
        }
    )
    relay_stats = []
    for i, child in enumerate(relay_children):
        stats = load_json_object(workdir / f"relay{i}.json") or {}
        lifetime_s = stats.get("duration_s")
        uploaded = stats.get("bytes_uploaded")
        cpu_s = stats.get("cpu_s", child.last_cpu_s)
        relay_stats.append(
            {
                "bytes_uploaded": uploaded,
                "upload_bps_mean": 8 * uploaded / lifetime_s if uploaded and lifetime_s else None,
                "cpu_s": cpu_s,
                "cpu_share": cpu_s / lifetime_s if cpu_s is not None and lifetime_s else None,
                "lifetime_s": lifetime_s,
            }
        )
    keep = (
        "continuity",
        "startup_s",
        "lag_s_p50",
        "lag_s_p95",
        "chunks_played",
        "chunks_missed",
        "reanchored_s",
        "bytes_from_source",
        "bytes_from_peers",
        "bytes_uploaded",
        "cpu_s",
    )
    return {
        "figures": figures,
        "relays": relay_stats,
        "per_viewer": [{k: s.get(k) for k in keep} for s in per_viewer],
        "timeline": timeline,
    }
