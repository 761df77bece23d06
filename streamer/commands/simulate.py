"""`streamer simulate`: the sans-I/O swarm core in virtual time, from 10 to 10,000 peers.

Link latency, heterogeneous uplinks (some viewers download only, as behind strict NATs), churn
and loss, all seeded, so a run is reproducible. With `--sweep` it runs each audience size and
plots the figures against the fluid bound. Large runs use a mypyc-compiled copy of the same core
in a child process (`--core`, streamer.sim.compiled): same results, ~3x faster. With `--profile
netbed` it runs the namespace test bed's sites instead (streamer.sim.bed: per-site delays and
loss, queued uplinks, transport buffers, TURN paths) and prints `streamer netbed`'s tables.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import Any

from streamer.bench.progress import Progress
from streamer.bench.simulate import SIMULATE_DEFAULTS, parse_sizes, settings_json, sweep
from streamer.bench.table import bench_table, command_line, option_argv, sweep_table
from streamer.errors import UserError
from streamer.sim import Scenario, compiled
from streamer.swarm import SwarmConfig

MAX_PEERS = 100_000
AUTO_COMPILE_PEER_SECONDS = 10_000
"""--core auto compiles for runs of at least this many peer-seconds (pure Python: ~1.5 min)."""

NAME = "simulate"
HELP = "simulate a swarm in virtual time (latency, mixed uplinks, NAT, churn, loss) up to 10k peers"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--profile",
        choices=("default", "netbed"),
        default="default",
        help="default: --peers viewers on simple links; netbed: the sites of `streamer netbed`'s "
        "default profile (with --seed, --duration per viewer, --json)",
    )
    parser.add_argument(
        "--buffer-high-bytes",
        type=int,
        help="netbed profile: each link's transport buffer high-water mark (default: the driver's)",
    )
    parser.add_argument(
        "--buffer-low-bytes",
        type=int,
        help="netbed profile: pull data again once a link's buffer drained to this (the driver's)",
    )
    parser.add_argument(
        "--ordered-only",
        action="store_true",
        help="netbed profile, a what-if: pieces and requests on the ordered channel with "
        "everything else (the drivers before 157c1e6), not on their own unordered one",
    )
    parser.add_argument(
        "--run-seed",
        type=int,
        help="netbed profile: seed of the simulation's own draws (default: --seed, which also "
        "lays out the sites as `streamer netbed --seed` does)",
    )
    parser.add_argument(
        "--stream-rate-bps",
        type=float,
        help="netbed profile: the stream's rate on the wire (default 745000, the bed's clip)",
    )
    d = SIMULATE_DEFAULTS
    parser.add_argument("--peers", type=int, default=d.peers, help=f"viewers (default {d.peers})")
    parser.add_argument("--sweep", help="comma-separated audience sizes, e.g. 10,100,1000,10000")
    parser.add_argument(
        "--duration", type=float, default=d.duration_s, help=f"virtual seconds ({d.duration_s:g})"
    )
    parser.add_argument("--seed", type=int, default=d.seed, help=f"random seed ({d.seed})")
    parser.add_argument(
        "--latency-ms", type=float, default=d.latency_s * 1000, help="one-way link latency"
    )
    parser.add_argument(
        "--loss", type=float, default=d.loss_rate, help="share of messages retransmitted"
    )
    parser.add_argument(
        "--churn", type=float, default=d.leave_share, help="share of viewers that leave"
    )
    parser.add_argument(
        "--download-only",
        type=float,
        default=d.download_only_share,
        help="share of viewers that upload nothing",
    )
    upload_range = ",".join(str(ratio) for ratio in d.peer_upload_ratio)
    parser.add_argument(
        "--upload-range",
        default=upload_range,
        help=f"uploading viewers' uplink, uniform LOW,HIGH x stream rate ({upload_range})",
    )
    parser.add_argument(
        "--source-upload",
        type=float,
        default=d.source_upload_ratio,
        help=f"x stream rate ({d.source_upload_ratio})",
    )
    parser.add_argument(
        "--relays",
        type=int,
        default=d.relays,
        help=f"relays ({d.relay_upload_ratio:g}x stream rate uplink)",
    )
    parser.add_argument("--join-window", type=float, help="all join within S (duration / 3)")
    parser.add_argument(
        "--no-peer-exchange",
        action="store_true",
        help="peers send no peers messages (the figures from before peer exchange)",
    )
    parser.add_argument(
        "--servers-down",
        metavar="START,END",
        help="no signaling server answers from START to END s: peers that want neighbours "
        "open links through peer exchange only",
    )
    parser.add_argument("--json", help="write the figures to this JSON file")
    parser.add_argument("--plot", help="with --sweep: a PNG of the figures as N grows")
    parser.add_argument(
        "--core",
        choices=("auto", "mypyc", "python"),
        default="auto",
        help="run the swarm core compiled by mypyc (built once, cached) or as pure Python; "
        f"auto: compiled from {AUTO_COMPILE_PEER_SECONDS:,} peer-seconds on, when it can be built",
    )


def _scenario(args: argparse.Namespace) -> Scenario:
    """The run the options describe (a sweep sets the audience size of each run)."""
    try:
        low_text, high_text = args.upload_range.split(",")
        return replace(
            SIMULATE_DEFAULTS,
            peers=args.peers,
            duration_s=args.duration,
            seed=args.seed,
            latency_s=args.latency_ms / 1000,
            loss_rate=args.loss,
            leave_share=args.churn,
            download_only_share=args.download_only,
            peer_upload_ratio=(float(low_text), float(high_text)),
            source_upload_ratio=args.source_upload,
            relays=args.relays,
            join_window_s=args.join_window,
            tracker_down_s=_window(args.servers_down),
            config=_exchange_config(args, SIMULATE_DEFAULTS.config),
        )
    except ValueError as error:
        raise UserError(f"bad simulation settings: {error}") from None


def _window(text: str | None) -> tuple[float, float] | None:
    """'20,60' -> (20.0, 60.0); ValueError for anything else."""
    if text is None:
        return None
    start_text, end_text = text.split(",")
    start, end = float(start_text), float(end_text)
    if not 0 <= start < end:
        raise ValueError(f"--servers-down needs 0 <= START < END, not {text!r}")
    return start, end


def _exchange_config(args: argparse.Namespace, config: SwarmConfig) -> SwarmConfig:
    return replace(config, exchange_interval_s=0.0) if args.no_peer_exchange else config


def run(args: argparse.Namespace) -> int:
    if args.profile == "netbed":
        return _run_bed(args)
    scenario = _scenario(args)
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
    signal.signal(signal.SIGTERM, _raise_interrupt)  # SIGTERM leaves like Ctrl-C
    child_exit = _run_compiled(args, sum(sizes) * scenario.duration_s, progress)
    if child_exit is not None:
        return child_exit
    results: list[dict[str, Any]] = []
    for n in sizes:
        progress.note(f"simulate: {n} peers, {scenario.duration_s:g} s of virtual time")
        results.extend(sweep([n], scenario, progress))
        last = results[-1]
        progress.note(
            f"simulate: {n} peers done in {last['wall_s']:.1f} s wall, "
            f"continuity mean {last['continuity_mean'] or 0:.3f}"
        )
        # Written after every size: a long sweep stopped early keeps what it measured.
        _save(args, scenario, results, complete=len(results) == len(sizes))
    print(sweep_table(results))
    return 0


def _run_bed(args: argparse.Namespace) -> int:
    """The bed's sites in virtual time: the same tables `streamer netbed` prints (pure Python:
    nine nodes need no compiled core)."""
    from streamer.netbed.report import sites_table, viewers_table
    from streamer.netbed.topology import Profile
    from streamer.sim.bed import BedScenario, run_bed_scenario

    if args.sweep or args.plot:
        raise UserError("--profile netbed runs one bed: no --sweep or --plot")
    if not 5 <= args.duration <= 3600:
        raise UserError("--duration must be between 5 and 3600 seconds")
    sc = BedScenario(
        profile=Profile(seed=args.seed),
        duration_s=args.duration,
        seed=args.seed if args.run_seed is None else args.run_seed,
    )
    sc = replace(sc, config=_exchange_config(args, sc.config))
    if args.stream_rate_bps is not None:
        if not 10_000 <= args.stream_rate_bps <= 100e6:
            raise UserError("--stream-rate-bps must be between 10,000 and 100,000,000")
        sc = replace(sc, stream_rate_bps=args.stream_rate_bps)
    try:
        transport = replace(
            sc.transport,
            buffer_high_bytes=args.buffer_high_bytes or sc.transport.buffer_high_bytes,
            buffer_low_bytes=args.buffer_low_bytes or sc.transport.buffer_low_bytes,
            unordered_channel=not args.ordered_only,
        )
    except ValueError as error:
        raise UserError(f"bad transport buffer: {error}") from None
    result = run_bed_scenario(replace(sc, transport=transport))
    doc = result.to_json()
    bed_options = ["profile", "duration", "seed", "run_seed", "stream_rate_bps", "json"]
    bed_options += ["buffer_high_bytes", "buffer_low_bytes", "ordered_only"]
    doc["command"] = command_line(NAME, {k: getattr(args, k) for k in bed_options})
    doc["machine"] = f"{platform.machine()}, {os.cpu_count()} cores, " + (
        f"Python {platform.python_version()}"
    )
    doc["transport"] = {
        "buffer_high_bytes": transport.buffer_high_bytes,
        "buffer_low_bytes": transport.buffer_low_bytes,
    }
    sites = doc["sites"]
    src_delay_ms = next(float(s["one_way_delay_ms"]) for s in sites if s["role"] == "broadcaster")
    swarm = doc["swarm"]
    print(f"simulate: {doc['command']}")
    print(
        f"stream {sc.stream_rate_bps / 1e6:.2f} Mbit/s; the bed's sites in virtual time, "
        f"{result.events:,} events in {result.wall_s:.1f} s wall"
    )
    print()
    print(sites_table(sites, sc.stream_rate_bps))
    print()
    print(viewers_table(sites, swarm["per_viewer"], None, src_delay_ms))
    print()
    print(bench_table(swarm["figures"], {}))
    for name, relay in swarm["relays"].items():
        rate = 8 * relay["bytes_uploaded"] / relay["duration_s"] / 1e6
        print(f"{name}: uploaded {rate:.2f} Mbit/s on average")
    if args.json:
        _write(Path(args.json), json.dumps(doc, indent=2) + "\n")
    return 0


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _run_compiled(args: argparse.Namespace, peer_seconds: float, progress: Progress) -> int | None:
    """Run this same command in a child process on the compiled core; its exit code, or None to
    run here (pure Python asked for, a small run, already compiled, or no build possible)."""
    if os.environ.get(compiled.CHILD_ENV):
        if compiled.core_kind() != "mypyc":
            raise UserError("the compiled core did not load in the child process")
        return None
    if args.core == "python" or compiled.core_kind() == "mypyc":
        return None
    if args.core == "auto" and peer_seconds < AUTO_COMPILE_PEER_SECONDS:
        return None
    build = compiled.ensure_build(progress.note)
    if build.path is None:
        if args.core == "mypyc":
            raise UserError(f"cannot compile the swarm core: {build.reason}")
        progress.note(f"simulate: pure-Python core ({build.reason})")
        return None
    progress.note(f"simulate: mypyc-compiled core ({build.reason})")
    argv = [sys.executable, "-m", "streamer", NAME, *option_argv(_options(args))]
    child = subprocess.Popen(argv, env=compiled.child_env(build.path))
    try:
        return child.wait()
    except KeyboardInterrupt:
        child.terminate()  # it stops like we do: every size it finished is saved
        child.wait()
        raise


def _save(
    args: argparse.Namespace, scenario: Scenario, results: list[dict[str, Any]], complete: bool
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
                "settings": settings_json(scenario),
                "core": compiled.core_kind(),
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
