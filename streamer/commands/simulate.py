"""`streamer simulate`: the sans-I/O swarm core in virtual time, from 10 to 10,000 peers.

Link latency, heterogeneous uplinks (some viewers download only, as behind strict NATs), churn
and loss, all seeded, so a run is reproducible. With `--sweep` it runs each audience size and
plots the figures against the fluid bound.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path
from typing import Any

from streamer.bench.progress import Progress
from streamer.bench.simulate import SimSettings, parse_sizes, settings_json, sweep
from streamer.bench.table import command_line, sweep_table
from streamer.errors import UserError

NAME = "simulate"
HELP = "simulate a swarm in virtual time (latency, mixed uplinks, NAT, churn, loss) up to 10k peers"

MAX_PEERS = 100_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--peers", type=int, default=100, help="viewers (default 100)")
    parser.add_argument("--sweep", help="comma-separated audience sizes, e.g. 10,100,1000,10000")
    parser.add_argument("--duration", type=float, default=60.0, help="virtual seconds (60)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (1)")
    parser.add_argument("--latency-ms", type=float, default=30.0, help="one-way link latency")
    parser.add_argument("--loss", type=float, default=0.005, help="share of messages retransmitted")
    parser.add_argument("--churn", type=float, default=0.05, help="share of viewers that leave")
    parser.add_argument(
        "--download-only", type=float, default=0.15, help="share of viewers that upload nothing"
    )
    parser.add_argument(
        "--upload-range",
        default="0.5,3.0",
        help="uploading viewers' uplink, uniform LOW,HIGH x stream rate (0.5,3.0)",
    )
    parser.add_argument("--source-upload", type=float, default=2.0, help="x stream rate (2.0)")
    parser.add_argument("--relays", type=int, default=0, help="relays (10x stream rate uplink)")
    parser.add_argument("--join-window", type=float, help="all join within S (duration / 3)")
    parser.add_argument("--json", help="write the figures to this JSON file")
    parser.add_argument("--plot", help="with --sweep: a PNG of the figures as N grows")


def _settings(args: argparse.Namespace) -> SimSettings:
    try:
        low_text, high_text = args.upload_range.split(",")
        return SimSettings(
            duration_s=args.duration,
            seed=args.seed,
            latency_s=args.latency_ms / 1000,
            loss_rate=args.loss,
            churn_share=args.churn,
            download_only_share=args.download_only,
            upload_ratio_range=(float(low_text), float(high_text)),
            source_upload_ratio=args.source_upload,
            relays=args.relays,
            join_window_s=args.join_window,
        )
    except ValueError as error:
        raise UserError(f"bad simulation settings: {error}") from None


def run(args: argparse.Namespace) -> int:
    settings = _settings(args)
    try:
        sizes = parse_sizes(args.sweep) if args.sweep else [args.peers]
    except ValueError as error:
        raise UserError(f"--sweep: {error}") from None
    if any(not 1 <= n <= MAX_PEERS for n in sizes):
        raise UserError(f"peer counts must be between 1 and {MAX_PEERS:,}")
    if args.plot and not args.sweep:
        raise UserError("--plot needs --sweep (it plots figures as the audience grows)")
    if args.plot and not args.plot.lower().endswith(".png"):
        raise UserError("--plot must name a .png file")
    progress = Progress(interval_s=10.0)
    results: list[dict[str, Any]] = []
    for n in sizes:
        progress.note(f"simulate: {n} peers, {settings.duration_s:g} s of virtual time")
        results.extend(sweep([n], settings, progress))
        last = results[-1]
        progress.note(
            f"simulate: {n} peers done in {last['wall_s']:.1f} s wall, "
            f"continuity mean {last['continuity_mean'] or 0:.3f}"
        )
        # Written after every size: a long sweep stopped early keeps what it measured.
        _save(args, settings, results, complete=len(results) == len(sizes))
    print(sweep_table(results))
    return 0


def _save(
    args: argparse.Namespace, settings: SimSettings, results: list[dict[str, Any]], complete: bool
) -> None:
    """JSON (headline keys = the largest size so far; all sizes under "results") and the plot."""
    if args.json:
        doc: dict[str, Any] = dict(results[-1])
        if args.sweep:
            doc["results"] = results
            doc["sweep_complete"] = complete
        doc.update(
            {
                "command": command_line(NAME, _options(args)),
                "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
                f"Python {platform.python_version()}",
                "settings": settings_json(settings),
            }
        )
        _write(Path(args.json), json.dumps(doc, indent=2) + "\n")
    if args.plot:
        from streamer.bench.plot import plot_sweep

        plot_sweep(results, Path(args.plot))


def _write(path: Path, text: str) -> None:
    try:
        path.write_text(text)
    except OSError as error:
        raise UserError(f"cannot write {path}: {error.strerror or error}") from None


def _options(args: argparse.Namespace) -> dict[str, Any]:
    """This command's own options (not the CLI's global ones) as parsed."""
    return {k: v for k, v in vars(args).items() if k not in ("command", "run", "verbose")}
