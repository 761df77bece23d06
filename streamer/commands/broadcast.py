"""`streamer broadcast INPUT`: publish a live channel into the swarm (embedded server optional).

Without `--server` it runs the signaling server in the same process and prints the watch URL.
With `--listen rtmp://HOST:PORT/APP` it waits for an encoder (OBS, an encoder box) to push, prints
the server URL and stream key to enter there, and keeps running while the encoder disconnects and
reconnects: seqs and media time continue, viewers see a pause.
Seqs and media times are anchored on the wall clock, so a broadcaster restarted with the same key
file continues numbering ahead of where it stopped and viewers resume instead of starting over.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

from signaling import config as signaling_config
from streamer.commands.relay import (
    add_exchange_argument,
    add_hop_trace_argument,
    add_ice_arguments,
    add_server_argument,
    check_channel_name,
    rtc_config,
    server_urls,
)
from streamer.errors import UserError
from streamer.media import MediaOptions, MediaStream, open_media, open_push
from streamer.media.ingest import ListenInterrupted, PushListener
from streamer.media.listen import ListenSpec, listen_support_note, parse_listen_url
from streamer.media.pacing import live_chunks
from streamer.node.driver import NodeConfig, SwarmNode
from streamer.node.keyfile import default_key_path, load_or_create_key
from streamer.node.media_info import media_description
from streamer.node.runner import attach_status_line, install_stop_signals, wait_for_end, write_stats
from streamer.node.units import parse_rate_bps

NAME = "broadcast"
HELP = (
    "broadcast INPUT (file, camera, URL or testsrc) or an encoder's push (--listen) live into "
    "the swarm; prints the watch URL"
)

EPOCH_S = 1_735_689_600.0
"""2025-01-01 UTC: seqs count chunk lengths from here, so they fit the wire's 32 bits for years."""
REPUBLISH_AFTER_CHUNKS = 5
"""Re-publish the media description once the real bitrate is measured from this many chunks."""


def first_seq_for(now_s: float, chunk_seconds: float) -> int:
    """The first seq of a broadcast starting at now_s: later starts always number higher."""
    return int((now_s - EPOCH_S) / chunk_seconds)


def session_epoch_for(now_s: float) -> int:
    """The broadcast session of a broadcaster starting at now_s (whole seconds since EPOCH_S):
    chunk headers carry it, so a restart refuses the chunks of every earlier session."""
    return int(now_s - EPOCH_S) & 0xFFFFFFFF


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "input",
        nargs="?",
        help="a media file, /dev/video0, a stream URL (rtsp://, rtmp://, http://, ...) or testsrc",
    )
    parser.add_argument(
        "--listen",
        metavar="URL",
        help="wait for an encoder (OBS) to push here instead of reading INPUT, e.g. "
        "rtmp://0.0.0.0:1935/live; survives the encoder reconnecting. Push protocols this "
        f"FFmpeg can receive: {listen_support_note()}",
    )
    parser.add_argument(
        "--stream-key",
        metavar="KEY",
        help="the stream key encoders must push with (default: a random one, printed); "
        "pushes with another key are refused",
    )
    parser.add_argument("--channel", default="live", help="channel name (default: live)")
    add_server_argument(
        parser,
        required=False,
        help="signaling server base URL (repeat it for the other servers of a cluster: the "
        "broadcaster fails over to them); without it one is started embedded",
    )
    parser.add_argument("--host", default="127.0.0.1", help="embedded server address")
    parser.add_argument(
        "--port", type=int, default=8080, help="embedded server port (0 picks a free one)"
    )
    parser.add_argument("--loop", action="store_true", help="loop a file input forever")
    parser.add_argument("--key", help="key file (signing key + channel secret), made if missing")
    parser.add_argument("--chunk-seconds", type=float, default=1.0, help="chunk length (s)")
    parser.add_argument("--video-bitrate", default="1M", help="bitrate when transcoding (1M)")
    parser.add_argument(
        "--transcode",
        choices=("auto", "always", "never"),
        default="auto",
        help="auto: copy H.264/AAC whose keyframes fit the chunks, re-encode the rest, and switch "
        "to re-encoding when a later GOP is longer than --gop-limit; always; never: copy, even "
        "long GOPs (viewers' lag grows by the longest chunk)",
    )
    parser.add_argument(
        "--gop-limit",
        type=float,
        metavar="SECONDS",
        help="longest keyframe interval copied as it is (default: 2x --chunk-seconds)",
    )
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    parser.add_argument("--max-neighbours", type=int, default=16, help="peers served at once")
    parser.add_argument("--upload-limit", help="cap on upload, e.g. 5M (bits/s)")
    parser.add_argument("--stats-json", help="write stats to this file on exit")
    parser.add_argument("--status-interval", type=float, default=10.0, help="status line period")
    add_hop_trace_argument(parser)
    add_ice_arguments(parser)
    add_exchange_argument(parser)
    embedded = parser.add_argument_group("STUN/TURN of the embedded server (without --server)")
    signaling_config.add_ice_arguments(embedded)


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_broadcast(args))


def _options(args: argparse.Namespace) -> MediaOptions:
    try:
        return MediaOptions(
            chunk_seconds=args.chunk_seconds,
            video_bitrate_bps=parse_rate_bps(args.video_bitrate),
            transcode=args.transcode,
            loop=args.loop,
            gop_limit_s=args.gop_limit,
        )
    except ValueError as error:
        raise UserError(str(error)) from None


def _listen_spec(args: argparse.Namespace) -> ListenSpec | None:
    if args.listen is None:
        if args.input is None:
            raise UserError("give an INPUT to broadcast, or --listen URL for an encoder to push to")
        if args.stream_key is not None:
            raise UserError("--stream-key goes with --listen")
        return None
    if args.input is not None:
        raise UserError("give either an INPUT or --listen, not both")
    if args.loop:
        raise UserError("--loop works with files only, not with --listen")
    return parse_listen_url(args.listen, args.stream_key)


def _print_push_target(spec: ListenSpec) -> None:
    """What to enter in OBS (Settings > Stream > Service: Custom)."""
    server = spec.server_url(_public_host())
    made = " (random; --stream-key sets one)" if spec.key_generated else ""
    print(f"encoder server: {server}", flush=True)
    print(f"stream key: {spec.key}{made}", flush=True)
    print(
        f"waiting for an encoder to push to {spec.display_url} (OBS: Settings > Stream > "
        "Service Custom, Server and Stream Key as above)",
        file=sys.stderr,
        flush=True,
    )


def _public_host() -> str:
    """This machine's address as others on the network reach it (no packet is sent)."""
    import socket

    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: picks the outgoing interface
            return str(probe.getsockname()[0])
    except OSError:
        return "127.0.0.1"


async def _open_push(
    listener: PushListener, options: MediaOptions, stop: asyncio.Event
) -> MediaStream | None:
    """Wait for the first good push; None when stopped first (Ctrl-C)."""
    opening = asyncio.ensure_future(asyncio.to_thread(open_push, listener, options))
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({opening, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
    if not opening.done():
        listener.interrupt()
    try:
        return await opening
    except ListenInterrupted:
        return None


async def _broadcast(args: argparse.Namespace) -> int:
    check_channel_name(args.channel)  # also keeps the default key file path inside its folder
    options = _options(args)
    push_spec = _listen_spec(args)
    ice = signaling_config.ice_settings_from_args(args)
    if args.server is not None and ice.configured:
        raise UserError(
            "--turn-url/--ice-server/--turn-* set up the embedded server; "
            "with --server, give them to `streamer serve`"
        )
    upload_limit_bps = parse_rate_bps(args.upload_limit) if args.upload_limit else None
    key = load_or_create_key(args.key or default_key_path(args.channel))
    stream: MediaStream | None = None
    listener: PushListener | None = None
    if push_spec is None:
        stream = await asyncio.to_thread(open_media, args.input, options)
    else:
        listener = PushListener(push_spec)
    server: Any = None
    node: SwarmNode | None = None
    stats: dict[str, Any] = {}
    stop = asyncio.Event()
    try:
        fallback_urls: tuple[str, ...] = ()
        if args.server is None:
            server = await _start_embedded_server(args.host, args.port, ice)
            url = server.url
        else:
            url, fallback_urls = server_urls(args)
        print(f"watch: {url.rstrip('/')}/watch/{args.channel}", flush=True)
        epoch = session_epoch_for(time.time())
        node = SwarmNode(
            NodeConfig(
                server_url=url,
                fallback_server_urls=fallback_urls,
                channel=args.channel,
                role="broadcaster",
                secret=key.secret,
                signing_key=key.signing_key,
                max_neighbours=args.max_neighbours,
                upload_limit_bps=upload_limit_bps,
                chunk_seconds=options.chunk_seconds,
                epoch=epoch,
                rtc=rtc_config(args),
                peer_exchange=not args.no_peer_exchange,
                hop_trace_path=args.hop_trace,
            )
        )
        await node.start()
        # Only once the channel is ours: a refused join stays a one-line error.
        print(
            "open it in a browser (every tab is a peer); Ctrl-C ends the broadcast",
            file=sys.stderr,
            flush=True,
        )
        install_stop_signals(stop)
        if listener is not None:
            _print_push_target(listener.spec)
            stream = await _open_push(listener, options, stop)
            if stream is None:
                return 0  # stopped before any encoder pushed
            print(f"encoder connected: {stream.plan_reason}", file=sys.stderr, flush=True)
        assert stream is not None
        printer = attach_status_line(node, args.status_interval)
        _add_media_note(node, stream)
        first_seq = first_seq_for(time.time(), options.chunk_seconds)
        transcoded_bps = options.video_bitrate_bps + options.audio_bitrate_bps
        estimate_bps = transcoded_bps if stream.info.video_transcoded else 0
        await node.publish_media(
            media_description(stream.info, key.public_key_raw, estimate_bps, first_seq, epoch)
        )
        release = _release(node, stream, key.public_key_raw, first_seq, epoch)
        reason = await wait_for_end(stop, node, args.duration, release)
        printer.finish()
        if reason == "work":  # the input ended: let peers fetch the tail, then say so
            await asyncio.sleep(3 * options.chunk_seconds)
            await node.end_broadcast()
        if node.failure is not None:
            raise node.failure
        stats = node.stats()
    finally:
        if listener is not None:
            listener.interrupt()
        if stream is not None:
            stream.close()
        if node is not None:
            if not stats:
                stats = node.stats()
            await node.close()
        if server is not None:
            await server.close()
        write_stats(args.stats_json, stats)
    return 0


def _add_media_note(node: SwarmNode, stream: MediaStream) -> None:
    """Append the media pipeline's note (a long GOP re-encoded or kept) to the status line."""
    show = node.on_status
    if show is None:
        return

    def show_with_media(figures: dict[str, Any]) -> None:
        note = stream.status_note()
        if note:
            earlier = figures.get("note")
            figures = {**figures, "note": f"{earlier}  {note}" if earlier else note}
        show(figures)

    node.on_status = show_with_media


async def _release(
    node: SwarmNode, stream: MediaStream, public_key_raw: bytes, first_seq: int, epoch: int
) -> None:
    """Release the input's chunks into the swarm on the wall clock."""
    anchor_s = time.time() - EPOCH_S
    released_bytes = 0
    released_s = 0.0
    # Seqs are contiguous within a session, across an encoder's outage too (its chunks' media
    # times jump by the outage): viewers wait at the live edge, and a seq gap means a real loss.
    seq = first_seq
    async for chunk in live_chunks(stream):
        node.publish_chunk(seq, chunk.data, anchor_s + chunk.start_s, chunk.duration_s)
        seq += 1
        released_bytes += len(chunk.data)
        released_s += chunk.duration_s
        if node.chunks_released == REPUBLISH_AFTER_CHUNKS and released_s > 0:
            bitrate_bps = int(8 * released_bytes / released_s)
            await node.publish_media(
                media_description(stream.info, public_key_raw, bitrate_bps, first_seq, epoch)
            )


async def _start_embedded_server(host: str, port: int, ice: signaling_config.IceSettings) -> Any:
    from signaling.app import start_server

    config = signaling_config.ServerConfig(
        host=host,
        port=port,
        ice_servers=ice.ice_servers,
        turn_secret=ice.turn_secret,
        turn_ttl_s=ice.turn_ttl_s,
    )
    try:
        return await start_server(config)
    except OSError as error:
        raise UserError(f"cannot start the embedded server: {error.strerror or error}") from None
