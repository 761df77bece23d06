"""Swarm benchmark: 1 broadcaster, R relays, N watchers as separate processes on 127.0.0.1.

    .venv/bin/python benchmarks/swarm_bench.py --watchers 20 --relays 2 --duration 60 \
        --json bench-swarm.json

Why separate processes: that is how the swarm runs (each peer its own aiortc stack and event
loop), and it charges every process's CPU to this machine honestly. The stream is the bundled
sample transcoded once to `--bitrate` (default 1 Mbit/s) as fragmented MP4, then broadcast with
`--loop` (a remux: the broadcaster spends no CPU on encoding during the run).

Reports per watcher: continuity, startup, lag p50/p95, bytes from source vs peers; the
broadcaster's upload ratio (bytes uploaded / stream bytes) next to what client-server would cost
(one copy per viewer: N x); relays' upload and CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from streamer.media import MediaOptions, open_media  # noqa: E402
from streamer.node.units import parse_rate_bps  # noqa: E402


def make_clip(workdir: Path, bitrate_bps: int, chunk_seconds: float) -> Path:
    """The sample transcoded to bitrate_bps as one fMP4 file (init + chunks), made once."""
    clip = workdir / f"sample-{bitrate_bps}bps-{chunk_seconds}s.mp4"
    if clip.exists():
        return clip
    options = MediaOptions(
        chunk_seconds=chunk_seconds, video_bitrate_bps=bitrate_bps, transcode="always"
    )
    with (
        open_media(str(ROOT / "media" / "sample.mp4"), options) as stream,
        open(clip.with_suffix(".tmp"), "wb") as out,
    ):
        out.write(stream.info.init_segment)
        for chunk in stream.chunks():
            out.write(chunk.data)
    clip.with_suffix(".tmp").rename(clip)
    return clip


def streamer(log: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "streamer", *args],
        cwd=ROOT,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
        stdout=subprocess.PIPE,
        stderr=open(log, "w"),
        text=True,
    )


def pct(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(fraction * (len(ordered) - 1))))]


def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="swarm-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    bitrate_bps = parse_rate_bps(args.bitrate)
    clip = make_clip(workdir, bitrate_bps, args.chunk_seconds)
    key = workdir / "bench.key"
    cast = streamer(
        workdir / "broadcast.log",
        "broadcast",
        str(clip),
        "--loop",
        "--port",
        "0",
        "--key",
        str(key),
        "--chunk-seconds",
        str(args.chunk_seconds),
        "--stats-json",
        str(workdir / "b.json"),
        "--status-interval",
        "5",
    )
    assert cast.stdout is not None
    line = cast.stdout.readline()
    if not line.startswith("watch: "):
        cast.kill()
        raise SystemExit(f"broadcaster did not start: {(workdir / 'broadcast.log').read_text()}")
    url = line.split()[1].rsplit("/watch/", 1)[0]
    print(f"broadcasting {clip.name} on {url}", file=sys.stderr)
    relays = [
        streamer(
            workdir / f"relay{i}.log",
            "relay",
            "--server",
            url,
            "--stats-json",
            str(workdir / f"r{i}.json"),
            "--status-interval",
            "5",
        )
        for i in range(args.relays)
    ]
    time.sleep(2.0)
    watchers = []
    for i in range(args.watchers):
        watchers.append(
            streamer(
                workdir / f"watch{i}.log",
                "watch",
                "--server",
                url,
                "--duration",
                str(args.duration),
                "--stats-json",
                str(workdir / f"w{i}.json"),
                "--status-interval",
                "10",
            )
        )
        time.sleep(args.stagger_s)
    started_s = time.monotonic()
    for proc in watchers:
        proc.wait(timeout=args.duration + 60)
    for proc in [*relays, cast]:
        proc.send_signal(signal.SIGTERM)
    for proc in [*relays, cast]:
        proc.wait(timeout=20)
    wall_s = time.monotonic() - started_s + args.stagger_s * args.watchers

    def load(name: str) -> dict[str, Any] | None:
        path = workdir / name
        return json.loads(path.read_text()) if path.exists() else None

    watch_stats = [load(f"w{i}.json") for i in range(args.watchers)]
    ok = [st for st in watch_stats if st is not None]
    b = load("b.json") or {}
    relay_stats = [load(f"r{i}.json") or {} for i in range(args.relays)]
    continuity = [st["continuity"] or 0.0 for st in ok]
    startup = [st["startup_s"] for st in ok if st["startup_s"] is not None]
    lag_p50 = [st["lag_s_p50"] for st in ok if st["lag_s_p50"] is not None]
    lag_p95 = [st["lag_s_p95"] for st in ok if st["lag_s_p95"] is not None]
    from_source = sum(st["bytes_from_source"] for st in ok)
    from_peers = sum(st["bytes_from_peers"] for st in ok)
    stream_bytes = b.get("stream_bytes") or 0
    return {
        "command": " ".join(sys.argv),
        "watchers": args.watchers,
        "watchers_reporting": len(ok),
        "relays": args.relays,
        "duration_s": args.duration,
        "wall_s": round(wall_s, 1),
        "bitrate_bps": bitrate_bps,
        "chunk_seconds": args.chunk_seconds,
        "continuity_min": min(continuity) if continuity else None,
        "continuity_mean": statistics.fmean(continuity) if continuity else None,
        "watchers_below_0_99": sum(1 for c in continuity if c < 0.99),
        "startup_s_p50": pct(startup, 0.5),
        "startup_s_max": max(startup) if startup else None,
        "lag_s_p50": pct(lag_p50, 0.5),
        "lag_s_p95": pct(lag_p95, 0.95),
        "source_upload_ratio": b.get("upload_ratio"),
        "baseline_source_upload_ratio": float(args.watchers + args.relays),
        "stream_bytes": stream_bytes,
        "source_bytes_uploaded": b.get("bytes_uploaded"),
        "source_cpu_s": b.get("cpu_s"),
        "watcher_share_from_peers": from_peers / (from_peers + from_source)
        if from_peers + from_source
        else None,
        "relay_bytes_uploaded": [r.get("bytes_uploaded") for r in relay_stats],
        "relay_cpu_s": [r.get("cpu_s") for r in relay_stats],
        "watcher_cpu_s_mean": statistics.fmean(st["cpu_s"] for st in ok) if ok else None,
        "per_watcher": [
            {
                key: st.get(key)
                for key in (
                    "continuity",
                    "startup_s",
                    "lag_s_p50",
                    "lag_s_p95",
                    "chunks_played",
                    "chunks_missed",
                    "bytes_from_source",
                    "bytes_from_peers",
                    "bytes_uploaded",
                    "cpu_s",
                )
            }
            for st in ok
        ],
        "workdir": str(workdir),
    }


def show(result: dict[str, Any]) -> None:
    def f(value: Any, digits: int = 2) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    print(
        f"watchers {result['watchers_reporting']}/{result['watchers']}, "
        f"relays {result['relays']}, {result['bitrate_bps'] / 1e6:.2f} Mbit/s, "
        f"{result['duration_s']} s each"
    )
    print(f"{'figure':<34}{'P2P swarm':>12}{'client-server':>16}{'target':>10}")
    rows = [
        ("continuity min", f(result["continuity_min"], 3), "1.000", ">= 0.99"),
        ("continuity mean", f(result["continuity_mean"], 3), "1.000", ""),
        ("startup p50 (s)", f(result["startup_s_p50"]), "", "<= 2"),
        ("lag p50 (s)", f(result["lag_s_p50"]), "", "<= 3"),
        ("lag p95 (s)", f(result["lag_s_p95"]), "", "<= 5"),
        (
            "source upload / stream",
            f(result["source_upload_ratio"]),
            f(result["baseline_source_upload_ratio"], 1),
            "<= 2",
        ),
        ("watcher bytes from peers", f(result["watcher_share_from_peers"], 3), "0", ""),
    ]
    for name, swarm, baseline, target in rows:
        print(f"{name:<34}{swarm:>12}{baseline:>16}{target:>10}")
    print("per watcher: continuity startup_s lag_p50 lag_p95 from_source_kB from_peers_kB cpu_s")
    for st in result["per_watcher"]:
        print(
            f"  {f(st['continuity'], 3)} {f(st['startup_s'])} {f(st['lag_s_p50'])} "
            f"{f(st['lag_s_p95'])} {st['bytes_from_source'] // 1000} "
            f"{st['bytes_from_peers'] // 1000} {f(st['cpu_s'], 1)}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--watchers", type=int, default=20)
    parser.add_argument("--relays", type=int, default=2)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds each watcher stays")
    parser.add_argument("--stagger-s", type=float, default=0.5, help="gap between watcher starts")
    parser.add_argument("--bitrate", default="1M")
    parser.add_argument("--chunk-seconds", type=float, default=1.0)
    parser.add_argument("--workdir", help="where logs, stats and the clip go (default: a tmp dir)")
    parser.add_argument("--json", help="write the result here")
    args = parser.parse_args()
    result = run(args)
    show(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
