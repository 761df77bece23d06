"""`streamer netbed`: the swarm and client-server on emulated real networks, in namespaces.

Builds a router namespace and one namespace per site (per-site one-way delay, jitter and loss,
tbf-shaped uplinks, cone and symmetric NATs, coturn for STUN/TURN), runs the real processes in
it (serve, broadcast, relays, watchers, headless Chromium pages), then the client-server
baseline on the same links, prints both side by side and removes everything. Needs root (or
CAP_NET_ADMIN); see streamer.netbed for the pieces.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import tempfile
from pathlib import Path
from types import FrameType
from typing import Any

from streamer.bench.capacity_cli import (
    add_capacity_arguments,
    capacity_options,
    result_doc,
    write_doc,
)
from streamer.bench.capacity_cli import report as report_capacity
from streamer.bench.clip import SAMPLE, make_clip
from streamer.bench.progress import Progress
from streamer.bench.table import command_line
from streamer.errors import UserError
from streamer.media import MediaOptions, open_media
from streamer.netbed import coturn, namespaces
from streamer.netbed.capacity import (
    CAPACITY_UPLINK,
    RELAY_LINKS,
    capacity_profile,
    place_relay,
    run_bed_capacity,
)
from streamer.netbed.report import report
from streamer.netbed.run import RunOptions, request_stop, run_bed
from streamer.netbed.shim import check_shim_available
from streamer.netbed.topology import (
    Bed,
    Profile,
    build_bed,
    describe_sites,
    parse_multiples,
    parse_nats,
    parse_range,
)
from streamer.node.units import parse_rate_bps

NAME = "netbed"
HELP = "run the swarm and client-server on emulated networks (namespaces, delay, loss, NAT, TURN)"
DEFAULTS = Profile()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--duration", type=float, default=60.0, help="seconds each viewer watches (default 60)")
    add("--relays", type=int, default=DEFAULTS.relays, help="relay sites (default 2)")
    add("--watchers", type=int, default=DEFAULTS.watchers, help="`streamer watch` sites (4)")
    add("--pages", type=int, default=DEFAULTS.pages, help="headless Chromium page sites (2)")
    add("--rtt-ms", default="20-150", help="RTT between two peers, LOW-HIGH ms (20-150)")
    add("--loss", default="0.5-1%", help="loss between two peers, LOW-HIGH (0.5-1%%)")
    add("--jitter-ms", type=float, default=DEFAULTS.jitter_ms, help="per-link jitter (3 ms)")
    add(
        "--uplinks",
        default=",".join(f"{x:g}" for x in DEFAULTS.uplinks),
        help="peers' uplinks in multiples of the stream, given in turn to relays, watchers, "
        "pages (default %(default)s)",
    )
    add("--source-uplink", type=float, default=DEFAULTS.source_uplink, help="broadcaster's (3)")
    add(
        "--queue-ms",
        type=float,
        default=DEFAULTS.uplink_queue_ms,
        help="each uplink's buffer in ms at its rate (default 200)",
    )
    add("--watcher-nats", default=",".join(DEFAULTS.watcher_nats), help="none/cone/symmetric")
    add("--page-nats", default=",".join(DEFAULTS.page_nats), help="NATs of the pages in turn")
    add("--input", help="media to stream (default: the bundled sample)")
    add("--bitrate", default="1M", help="stream video bitrate (default 1M)")
    add("--chunk-seconds", type=float, default=1.0, help="chunk length (s)")
    add("--stagger", type=float, default=1.0, help="seconds between joins (default 1)")
    add("--seed", type=int, default=DEFAULTS.seed, help="site order and the shim's draws")
    add(
        "--delay",
        choices=namespaces.DELAY_MODES,
        default="auto",
        help="who delays and drops packets: netem where the kernel has it, else the shim; "
        "none: nobody (uplinks and NATs only)",
    )
    add("--no-baseline", action="store_true", help="skip the client-server half")
    add(
        "--tell-uplinks",
        action="store_true",
        help="give broadcast, relays and watchers 90%% of their uplink as --upload-limit",
    )
    add(
        "--hop-trace",
        action="store_true",
        help="have broadcast, relays and watchers trace every request and piece (FILE.hops in "
        "the workdir) and report where a piece's time goes: request on the way, holder's "
        "queue, piece on the way",
    )
    add("--chromium", default="/usr/bin/chromium", help="Chromium binary for the pages")
    add("--json", help="write every figure to this JSON file")
    add("--workdir", help="logs and stats files go here (default: a temp dir)")
    capacity = parser.add_argument_group(
        "relay capacity (--relay-capacity: one relay site and one site of `streamer loadgen` "
        "viewers that fetch only from it; --duration is each step's measuring window)"
    )
    add_capacity_arguments(capacity, NAME)
    capacity.add_argument(
        "--capacity-uplink",
        type=float,
        default=CAPACITY_UPLINK,
        help="the relay's and the load site's uplinks in stream multiples (default %(default)g)",
    )
    capacity.add_argument(
        "--relay-link",
        choices=RELAY_LINKS,
        default="datacentre",
        help="the relay's link: a data centre's like the server's (default), or a home link "
        "drawn from the profile like the others",
    )
    add(
        "--cleanup",
        action="store_true",
        help="only remove what beds whose run died left behind (every run also does it first)",
    )


def _profile(args: argparse.Namespace) -> Profile:
    try:
        return Profile(
            rtt_ms=parse_range(args.rtt_ms),
            loss=parse_range(args.loss, percent=True),
            jitter_ms=args.jitter_ms,
            uplinks=parse_multiples(args.uplinks),
            source_uplink=args.source_uplink,
            uplink_queue_ms=args.queue_ms,
            relays=args.relays,
            watchers=args.watchers,
            pages=args.pages,
            watcher_nats=parse_nats(args.watcher_nats),
            page_nats=parse_nats(args.page_nats),
            seed=args.seed,
        )
    except ValueError as error:
        raise UserError(str(error)) from None


def _check(args: argparse.Namespace) -> None:
    if not 5 <= args.duration <= 3600:
        raise UserError("--duration must be between 5 and 3600 seconds")
    if not 0 <= args.stagger <= 10:
        raise UserError("--stagger must be between 0 and 10 seconds")
    if args.relay_capacity:
        args.pages = 0
        if not 1 <= args.capacity_uplink <= 1000:
            raise UserError("--capacity-uplink must be between 1 and 1000")
    elif args.watchers + args.pages < 1:
        raise UserError("the bed needs at least one viewer (--watchers or --pages)")
    if args.input and not Path(args.input).is_file():
        raise UserError(f"no such input file: {args.input}")
    namespaces.check_privileges()
    coturn.check_installed()
    if args.pages and not Path(args.chromium).exists():
        raise UserError(f"{args.chromium} is missing (Debian: apt-get install chromium)")
    if args.delay == "shim":
        check_shim_available()  # with --delay auto: once the bed knows whether netem is there


def clip_rate_bps(clip: Path, chunk_seconds: float) -> float:
    """Mean bit rate of the packaged clip (bytes of all chunks over their total duration)."""
    options = MediaOptions(chunk_seconds=chunk_seconds, transcode="never")
    size_bytes, duration_s = 0, 0.0
    with open_media(str(clip), options) as stream:
        for chunk in stream.chunks():
            size_bytes += len(chunk.data)
            duration_s += chunk.duration_s
    if duration_s <= 0:
        raise UserError(f"{clip} holds no media")
    return 8 * size_bytes / duration_s


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    """The first Ctrl-C/SIGTERM stops the run; more of them do not interrupt the clean-up."""
    if request_stop():
        raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    if args.cleanup:
        namespaces.check_privileges()
        stale = namespaces.cleanup_stale()
        print(f"netbed: removed {len(stale)} namespaces of beds whose run died")
        return 0
    _check(args)
    profile = _profile(args)
    if args.relay_capacity:
        profile = capacity_profile(profile, args.capacity_uplink)
    try:
        bitrate_bps = parse_rate_bps(args.bitrate)
    except ValueError as error:
        raise UserError(str(error)) from None
    # SIGTERM cleans up like Ctrl-C, and both do even when this process was started with them
    # ignored (a shell's background job) or blocked (a parent's signal mask is inherited).
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGINT, _raise_interrupt)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    progress = Progress()
    stale = namespaces.cleanup_stale()
    if stale:
        progress.note(f"netbed: removed {len(stale)} namespaces of an earlier bed that died")
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="netbed-"))
    workdir.mkdir(parents=True, exist_ok=True)
    progress.note(f"netbed: preparing the stream ({args.bitrate}bit/s); logs in {workdir}")
    clip = make_clip(Path(args.input) if args.input else SAMPLE, bitrate_bps, args.chunk_seconds)
    stream_bps = clip_rate_bps(clip, args.chunk_seconds)
    bed = build_bed(profile, stream_bps, namespaces.prefix_for(os.getpid()))
    if args.relay_capacity:
        bed = place_relay(bed, profile, args.relay_link)
    options = RunOptions(
        clip=clip,
        workdir=workdir,
        duration_s=args.duration,
        stagger_s=args.stagger,
        chunk_seconds=args.chunk_seconds,
        baseline=not args.no_baseline,
        tell_uplinks=args.tell_uplinks,
        delay_mode=args.delay,
        chromium=args.chromium,
        seed=args.seed,
        hop_trace=args.hop_trace,
    )
    if args.relay_capacity:
        return _run_capacity(args, bed, options, stream_bps, progress)
    outcome = run_bed(bed, options, progress.note)
    progress.finish()
    result: dict[str, Any] = {
        "command": command_line(NAME, _options(args)),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}",
        "stream_rate_bps": stream_bps,
        "sites": describe_sites(bed.sites),
        **outcome,
        "workdir": str(workdir),
    }
    print(report(result))
    if args.json:
        try:
            Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        except OSError as error:
            raise UserError(f"cannot write {args.json}: {error.strerror or error}") from None
    return 0


def _run_capacity(
    args: argparse.Namespace, bed: Bed, options: RunOptions, stream_bps: float, progress: Progress
) -> int:
    outcome = run_bed_capacity(bed, options, capacity_options(args), progress.note)
    progress.finish()
    omit: tuple[str, ...] = ("relays", "watchers", "pages", "uplinks", "watcher_nats")
    omit += ("page_nats", "no_baseline", "tell_uplinks", "chromium", "cleanup", "hop_trace")
    doc = result_doc(
        NAME,
        args,
        outcome["steps"],
        options.workdir,
        omit,
        where="netbed",
        delay_mode=outcome["delay_mode"],
        stream_rate_bps=stream_bps,
        sites=describe_sites(bed.sites),
    )
    print(report_capacity(doc))
    write_doc(args.json, doc)
    return 0


_CAPACITY_OPTIONS = (
    "relay_capacity",
    "steps",
    "keep_going",
    "with_source",
    "capacity_uplink",
    "relay_link",
)


def _options(args: argparse.Namespace) -> dict[str, Any]:
    """The options worth repeating in the report's command line (capacity ones only in that
    mode)."""
    skip = {"command", "run", "verbose"}
    if not getattr(args, "relay_capacity", False):
        skip.update(_CAPACITY_OPTIONS)
    return {k: v for k, v in vars(args).items() if k not in skip}
