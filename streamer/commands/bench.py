"""`streamer bench`: a real swarm on loopback, then client-server with the same viewers.

Both halves carry the same packaged clip at the same bitrate and play by the same playout rules,
so the table compares like with like: startup, continuity, lag, and how much the source uploads.
Bounded in time (every child has a deadline) and every process is stopped on exit or Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import tempfile
from pathlib import Path
from types import FrameType
from typing import Any

from streamer.bench.baseline import run_baseline
from streamer.bench.capacity_cli import add_capacity_arguments, run_relay_capacity
from streamer.bench.clip import SAMPLE, make_clip
from streamer.bench.progress import Progress
from streamer.bench.swarm_run import run_swarm
from streamer.bench.table import bench_table, command_line, fmt
from streamer.errors import UserError
from streamer.node.units import parse_rate_bps

NAME = "bench"
HELP = "measure a local swarm (separate processes) side by side with client-server over HTTP"

REQUIRED_KEYS = (
    "continuity_min",
    "continuity_mean",
    "startup_s_p50",
    "lag_s_p50",
    "lag_s_p95",
    "source_upload_ratio",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--peers", type=int, default=20, help="viewers (default 20)")
    parser.add_argument("--relays", type=int, default=2, help="relay processes (default 2)")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds each viewer watches")
    parser.add_argument("--input", help="media to stream (default: the bundled sample)")
    parser.add_argument(
        "--as-is",
        action="store_true",
        help="broadcast --input as a broadcaster would (its own keyframes and chunk lengths, "
        "--transcode as given) instead of packaging it once into --chunk-seconds GOPs",
    )
    parser.add_argument(
        "--transcode",
        choices=("auto", "never"),
        default="auto",
        help="with --as-is: the broadcaster's --transcode (default auto)",
    )
    parser.add_argument("--bitrate", default="1M", help="stream video bitrate (default 1M)")
    parser.add_argument("--chunk-seconds", type=float, default=1.0, help="chunk length (s)")
    parser.add_argument("--stagger", type=float, default=0.5, help="seconds between joins")
    parser.add_argument("--json", help="write every figure to this JSON file")
    parser.add_argument("--plot", help="write a PNG plot over time to this file")
    parser.add_argument("--workdir", help="logs and stats files go here (default: a temp dir)")
    capacity = parser.add_argument_group(
        "relay capacity (--relay-capacity: serve, broadcast, ONE relay, and `streamer loadgen` "
        "viewers that fetch only from it; --duration is each step's measuring window)"
    )
    add_capacity_arguments(capacity, NAME)


def _check(args: argparse.Namespace) -> None:
    if not 1 <= args.peers <= 200:
        raise UserError("--peers must be between 1 and 200")
    if not 0 <= args.relays <= 20:
        raise UserError("--relays must be between 0 and 20")
    if not 1 <= args.duration <= 3600:
        raise UserError("--duration must be between 1 and 3600 seconds")
    if not 0 <= args.stagger <= 10:
        raise UserError("--stagger must be between 0 and 10 seconds")
    if args.plot and not args.plot.lower().endswith(".png"):
        raise UserError("--plot must name a .png file")
    if args.input and not Path(args.input).is_file():
        raise UserError(f"no such input file: {args.input}")
    if args.as_is and not args.input:
        raise UserError("--as-is needs --input")


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    _check(args)
    if args.relay_capacity:
        return run_relay_capacity(args)
    try:
        bitrate_bps = parse_rate_bps(args.bitrate)
    except ValueError as error:
        raise UserError(str(error)) from None
    signal.signal(signal.SIGTERM, _raise_interrupt)  # SIGTERM cleans up like Ctrl-C
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    progress = Progress()
    if args.as_is:
        clip, transcode = Path(args.input), args.transcode
        progress.note(f"bench: {clip} as it is (--transcode {transcode}); logs in {workdir}")
    else:
        progress.note(f"bench: preparing the stream ({args.bitrate}bit/s); logs in {workdir}")
        input_path = Path(args.input) if args.input else SAMPLE
        clip, transcode = make_clip(input_path, bitrate_bps, args.chunk_seconds), "never"
    progress.note(f"bench: P2P swarm, {args.peers} watchers + {args.relays} relays")
    swarm = run_swarm(
        clip,
        workdir,
        peers=args.peers,
        relays=args.relays,
        duration_s=args.duration,
        stagger_s=args.stagger,
        chunk_seconds=args.chunk_seconds,
        transcode=transcode,
        progress=progress,
    )
    progress.note(f"bench: client-server, {args.peers} HTTP viewers of one aiohttp origin")
    baseline = asyncio.run(
        run_baseline(
            clip,
            viewers=args.peers,
            duration_s=args.duration,
            stagger_s=args.stagger,
            chunk_seconds=args.chunk_seconds,
            transcode=transcode,
            progress=progress,
        )
    )
    progress.finish()
    result = assemble(args, bitrate_bps, swarm, baseline, workdir)
    print(report(result))
    if args.json:
        _write(Path(args.json), json.dumps(result, indent=2) + "\n")
    if args.plot:
        from streamer.bench.plot import plot_bench

        plot_bench(result, Path(args.plot))
    return 0


def assemble(
    args: argparse.Namespace,
    bitrate_bps: int,
    swarm: dict[str, Any],
    baseline: dict[str, Any],
    workdir: Path,
) -> dict[str, Any]:
    """One JSON document: headline figures at the top, baseline_* beside them, details below."""
    sf, bf = swarm["figures"], baseline["figures"]
    stream_bytes = sf.get("stream_bytes") or 0
    lifetime_s = sf.get("source_lifetime_s")
    result: dict[str, Any] = {key: sf.get(key) for key in REQUIRED_KEYS}
    result.update({f"baseline_{key}": bf.get(key) for key in REQUIRED_KEYS})
    result.update(
        {
            "command": command_line(NAME, _options(args)),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
            f"{platform.python_version()}",
            "peers": args.peers,
            "relays": args.relays,
            "duration_s": args.duration,
            "chunk_seconds": args.chunk_seconds,
            "video_bitrate_bps": bitrate_bps,
            "stream_rate_bps": 8 * stream_bytes / lifetime_s if lifetime_s else None,
            "relay_upload_bytes": [r["bytes_uploaded"] for r in swarm["relays"]],
            "relay_cpu_s": [r["cpu_s"] for r in swarm["relays"]],
            "swarm": swarm,
            "baseline": baseline,
            "workdir": str(workdir),
        }
    )
    return result


def report(result: dict[str, Any]) -> str:
    """The side-by-side table plus the per-relay line."""
    sf, bf = result["swarm"]["figures"], result["baseline"]["figures"]
    lines = [
        f"{result['peers']} viewers, {result['relays']} relays, {result['duration_s']:g} s each, "
        f"{result['machine']}",
        bench_table(sf, bf),
    ]
    for i, relay in enumerate(result["swarm"]["relays"]):
        lines.append(
            f"relay{i}: uploaded {fmt((relay['bytes_uploaded'] or 0) / 1e6, 1)} MB "
            f"({fmt((relay['upload_bps_mean'] or 0) / 1e6)} Mbit/s), "
            f"CPU {fmt(relay['cpu_s'], 1)} s ({fmt(100 * (relay['cpu_share'] or 0), 1)}% of a core)"
        )
    if sf.get("viewers_without_stats"):
        lines.append(f"watchers that wrote no stats: {sf['viewers_without_stats']}")
    return "\n".join(lines)


def _write(path: Path, text: str) -> None:
    try:
        path.write_text(text)
    except OSError as error:
        raise UserError(f"cannot write {path}: {error.strerror or error}") from None


def _options(args: argparse.Namespace) -> dict[str, Any]:
    """This command's own options (not the CLI's global ones) as parsed."""
    return {k: v for k, v in vars(args).items() if k not in ("command", "run", "verbose")}
