"""`streamer package INPUT --out DIR`: input -> init.mp4, fMP4 chunks, manifest.json; unpaced."""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

from streamer.errors import UserError
from streamer.media import Chunk, MediaOptions, open_media
from streamer.media.package import write_package

NAME = "package"
HELP = "turn any input (file, camera, URL, testsrc) into init.mp4 + fMP4 chunks + manifest.json"

_RATE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmMgG]?)(?:bps|bit/s|b)?\s*$")
_MULTIPLIERS = {"": 1, "k": 1_000, "m": 1_000_000, "g": 1_000_000_000}


def parse_rate_bps(text: str) -> int:
    """'1M' -> 1_000_000, '800k' -> 800_000, '1500000' -> 1_500_000 (bits per second)."""
    match = _RATE_RE.match(text)
    if not match:
        raise argparse.ArgumentTypeError(f"not a bit rate: {text!r} (try 1M, 800k or 1500000)")
    value = float(match.group(1)) * _MULTIPLIERS[match.group(2).lower()]
    if value < 1:
        raise argparse.ArgumentTypeError(f"bit rate must be positive: {text!r}")
    return int(value)


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return value


def add_media_arguments(parser: argparse.ArgumentParser) -> None:
    """The media options shared by every command that opens an input (package, broadcast)."""
    parser.add_argument(
        "--chunk-seconds",
        type=_positive_seconds,
        default=1.0,
        metavar="S",
        help="target chunk length; chunks start on keyframes (default 1)",
    )
    parser.add_argument(
        "--video-bitrate",
        type=parse_rate_bps,
        default=1_000_000,
        metavar="RATE",
        help="bit rate when re-encoding video: 1M, 800k, 1500000 (default 1M)",
    )
    parser.add_argument(
        "--transcode",
        choices=("auto", "always", "never"),
        default="auto",
        help="auto: copy H.264/AAC when chunk-friendly, else re-encode (default)",
    )
    parser.add_argument(
        "--gop-limit",
        type=float,
        metavar="SECONDS",
        help="longest keyframe interval copied as it is (default: 2x --chunk-seconds)",
    )
    parser.add_argument(
        "--loop",
        action="store_true",
        help="replay a file forever, timestamps increasing across loops",
    )
    parser.add_argument(
        "--duration",
        type=_positive_seconds,
        default=None,
        metavar="S",
        help="stop after S seconds of media (needed with --loop for package)",
    )
    parser.add_argument(
        "--timeout",
        type=_positive_seconds,
        default=10.0,
        metavar="S",
        help="give up on a network/camera source that stalls this long (default 10)",
    )


def media_options_from_args(args: argparse.Namespace) -> MediaOptions:
    try:
        return MediaOptions(
            chunk_seconds=args.chunk_seconds,
            video_bitrate_bps=args.video_bitrate,
            transcode=args.transcode,
            loop=args.loop,
            gop_limit_s=args.gop_limit,
            duration_s=args.duration,
            open_timeout_s=args.timeout,
            read_timeout_s=args.timeout,
        )
    except ValueError as error:
        raise UserError(str(error)) from error


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "input",
        metavar="INPUT",
        help="file, /dev/video0, rtsp/rtmp/srt/http(s) URL, or testsrc[:WxH@FPS]",
    )
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="output directory")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    add_media_arguments(parser)


def run(args: argparse.Namespace) -> int:
    options = media_options_from_args(args)
    if options.loop and options.duration_s is None:
        raise UserError("--loop needs --duration S with package (it would never end)")
    try:
        args.out.mkdir(parents=True, exist_ok=True)  # fail on a bad --out before reading input
    except OSError as error:
        raise UserError(f"cannot create output directory {args.out}: {error.strerror}") from error
    started = time.monotonic()
    last_report = started
    interactive = sys.stderr.isatty()

    def progress(chunk: Chunk) -> None:
        nonlocal last_report
        now = time.monotonic()
        if args.quiet or now - last_report < 1.0:
            return
        last_report = now
        end = "\r" if interactive else "\n"
        media_s = chunk.start_s + chunk.duration_s
        print(
            f"  chunk {chunk.seq}: {media_s:.1f} s of media in {now - started:.1f} s",
            end=end,
            file=sys.stderr,
            flush=True,
        )

    with open_media(args.input, options) as stream:
        info = stream.info
        if not args.quiet:
            print(
                f"{args.input}: {info.mime_type}, {info.width or '-'}x{info.height or '-'}; "
                f"{stream.plan_reason}",
                file=sys.stderr,
            )
        summary = write_package(stream, args.out, on_chunk=progress)
    elapsed = time.monotonic() - started
    if interactive and not args.quiet:
        print(" " * 60, end="\r", file=sys.stderr)
    speed = summary.media_s / elapsed if elapsed > 0 else float("inf")
    print(
        f"wrote {summary.chunks} chunks, {summary.media_s:.2f} s of media, "
        f"{summary.total_bytes} bytes to {args.out} in {elapsed:.2f} s ({speed:.0f}x real time)",
        file=sys.stderr,
    )
    return 0
