"""`streamer bench --relay-capacity` (loopback) and the report both capacity runs print.

The bed's run (`streamer netbed --relay-capacity`) builds its namespaces first and then uses the
same steps (streamer.bench.capacity_run) and the same report.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import tempfile
from pathlib import Path
from types import FrameType
from typing import Any

from streamer.bench.capacity import capacity, capacity_table, parse_steps, verdict_line
from streamer.bench.capacity_run import CapacityOptions, run_loopback
from streamer.bench.clip import SAMPLE, make_clip
from streamer.bench.progress import Progress
from streamer.bench.table import command_line
from streamer.errors import UserError
from streamer.node.units import parse_rate_bps


def add_capacity_arguments(group: argparse._ArgumentGroup, command: str) -> None:
    """The options `bench` and `netbed` share for --relay-capacity."""
    group.add_argument(
        "--relay-capacity",
        action="store_true",
        help="measure how many viewers one relay serves at continuity >= 0.99 within 1 core"
        + (" (ignores --relays, --watchers, --pages, --uplinks)" if command == "netbed" else ""),
    )
    group.add_argument("--steps", default="10,20,30,40", help="viewer counts, in turn")
    group.add_argument(
        "--keep-going",
        action="store_true",
        help="run every step, not only while the previous ones held",
    )
    group.add_argument(
        "--with-source", action="store_true", help="viewers may also fetch from the broadcaster"
    )


def capacity_options(args: argparse.Namespace) -> CapacityOptions:
    try:
        steps = parse_steps(args.steps)
    except ValueError as error:
        raise UserError(f"--steps: {error}") from None
    return CapacityOptions(
        steps=steps,
        duration_s=args.duration,
        stagger_s=args.stagger,
        with_source=args.with_source,
        keep_going=args.keep_going,
    )


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def git_commit() -> str | None:
    """The short commit of the checkout this runs from (None outside a git checkout)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).resolve().parent,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def result_doc(
    name: str,
    args: argparse.Namespace,
    steps: list[dict[str, Any]],
    workdir: Path,
    omit: tuple[str, ...] = (),
    **extra: Any,
) -> dict[str, Any]:
    """The JSON document of a capacity run (`omit`: options of the command's other mode)."""
    skip = ("command", "run", "verbose", *omit)
    options = {k: v for k, v in vars(args).items() if k not in skip}
    return {
        "command": command_line(name, options),
        "commit": git_commit(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}",
        "capacity_viewers": capacity(steps),
        "steps": steps,
        "workdir": str(workdir),
        **extra,
    }


def report(doc: dict[str, Any]) -> str:
    return "\n".join(
        [
            f"{doc['command']}  (commit {doc['commit']}, {doc['machine']})",
            capacity_table(doc["steps"]),
            verdict_line(doc["steps"]),
        ]
    )


def write_doc(path: str | None, doc: dict[str, Any]) -> None:
    if path is None:
        return
    try:
        Path(path).write_text(json.dumps(doc, indent=2) + "\n")
    except OSError as error:
        raise UserError(f"cannot write {path}: {error.strerror or error}") from None


def run_relay_capacity(args: argparse.Namespace) -> int:
    """The loopback capacity run of `streamer bench --relay-capacity`."""
    options = capacity_options(args)
    try:
        bitrate_bps = parse_rate_bps(args.bitrate)
    except ValueError as error:
        raise UserError(str(error)) from None
    signal.signal(signal.SIGTERM, _raise_interrupt)  # SIGTERM cleans up like Ctrl-C
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="capacity-"))
    workdir.mkdir(parents=True, exist_ok=True)
    progress = Progress()
    progress.note(f"bench: relay capacity, steps {options.steps}; logs in {workdir}")
    clip = make_clip(Path(args.input) if args.input else SAMPLE, bitrate_bps, args.chunk_seconds)
    steps = run_loopback(clip, workdir, options, args.chunk_seconds, progress.note)
    progress.finish()
    omit = ("peers", "relays", "as_is", "transcode", "plot")
    doc = result_doc("bench", args, steps, workdir, omit, where="loopback")
    print(report(doc))
    write_doc(args.json, doc)
    return 0
