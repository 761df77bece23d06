"""`streamer loadgen`: many headless viewers of one relay, in one process (capacity tests).

The viewers neither upload nor link to each other (see streamer.bench.loadgen), so every byte
they play comes through the relays of the channel (and, with --with-source, the broadcaster).
`streamer bench --relay-capacity` and `streamer netbed --relay-capacity` run it for each step.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

from streamer.bench.capacity import MAX_VIEWERS
from streamer.bench.loadgen import LoadOptions, run_load
from streamer.commands.relay import add_server_argument, check_channel_name, server_urls
from streamer.errors import UserError
from streamer.node.runner import install_stop_signals

NAME = "loadgen"
HELP = "run many headless viewers in one process that fetch only from relays (capacity tests)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_server_argument(parser, required=True)
    parser.add_argument("--channel", default="live", help="channel name (default: live)")
    parser.add_argument("--viewers", type=int, default=10, help="viewers (default 10)")
    parser.add_argument(
        "--duration",
        type=float,
        default=30.0,
        help="seconds every viewer watches after the last one joined (default 30)",
    )
    parser.add_argument("--stagger", type=float, default=0.3, help="seconds between joins (0.3)")
    parser.add_argument(
        "--with-source",
        action="store_true",
        help="let viewers link to the broadcaster too (default: relays only)",
    )
    parser.add_argument("--stats-json", help="write every viewer's stats and the CPU here")


def _check(args: argparse.Namespace) -> None:
    check_channel_name(args.channel)
    if not 1 <= args.viewers <= MAX_VIEWERS:
        raise UserError(f"--viewers must be between 1 and {MAX_VIEWERS}")
    if not 1 <= args.duration <= 3600:
        raise UserError("--duration must be between 1 and 3600 seconds")
    if not 0 <= args.stagger <= 10:
        raise UserError("--stagger must be between 0 and 10 seconds")


def run(args: argparse.Namespace) -> int:
    _check(args)
    first, others = server_urls(args)
    options = LoadOptions(
        server_url=first,
        fallback_server_urls=others,
        channel=args.channel,
        viewers=args.viewers,
        duration_s=args.duration,
        stagger_s=args.stagger,
        with_source=args.with_source,
    )
    return asyncio.run(_main(options, args.stats_json))


def _say(line: str) -> None:
    print(line, flush=True)


async def _main(options: LoadOptions, stats_path: str | None) -> int:
    stop = asyncio.Event()
    install_stop_signals(stop)
    result = await run_load(options, _say, stop)
    if stats_path is not None:
        try:
            Path(stats_path).write_text(json.dumps(result.to_json(), indent=2) + "\n")
        except OSError as error:
            raise UserError(f"cannot write {stats_path}: {error.strerror or error}") from None
    print(
        f"loadgen: {result.joined}/{options.viewers} viewers joined, "
        f"CPU {result.cpu_s:.1f} s over {result.wall_s:.1f} s",
        flush=True,
    )
    return 130 if stop.is_set() else 0
