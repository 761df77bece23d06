"""Data-channel throughput between two processes: `python -m streamer.bench.data_channel`.

Why: aiortc's SCTP is pure Python, so a data channel's speed is CPU-bound, and relay capacity
(viewers per relay process) follows from it. This measures one direction between two real
processes on this machine: setup time, throughput with flow control by bufferedAmount, and CPU
seconds per transferred Mbit on each side. The two processes exchange their offer/answer over
the child's stdin/stdout (one JSON object per line), so no server is involved.

The same harness lets tests kill the receiving process mid-transfer (`kill_after_bytes`) and
measure how long the sender takes to notice.

For emulated networks (benchmarks/sctp_on_bed.py): `--child-prefix "ip netns exec NS"` starts the
receiver elsewhere, `--duration S` sends for S seconds and measures the rate after `--warmup`,
`--sctp stock|tuned|...` picks the SCTP tuning (streamer.transport.sctp_tuning) in both processes,
and every message carries its send time, so the receiver reports how long messages took from
`send()` to delivery (both processes read the same CLOCK_MONOTONIC). The sender counts its SCTP
retransmission timeouts and retransmitted chunks.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shlex
import signal
import statistics
import struct
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from streamer.transport import sctp_tuning
from streamer.transport.rtc import PeerManager, RtcConfig

SOURCE_ID = "source"
SINK_ID = "sink"
_PROGRESS_INTERVAL_S = 0.1
_STAMP = struct.Struct("!d")
"""Each message starts with its send time (time.monotonic())."""


@dataclass
class BenchResult:
    total_bytes: int
    message_bytes: int
    setup_s: float
    transfer_s: float
    rate_mbps: float
    sender_cpu_s_per_mbit: float
    receiver_cpu_s_per_mbit: float
    #: Only with kill_after_bytes: seconds from the kill to `on_peer_closed`, and its reason.
    vanish_detect_s: float | None = None
    vanish_reason: str | None = None
    #: Send-to-delivery seconds of messages sent after the warm-up: p50, p95, max.
    latency_s: dict[str, float] = field(default_factory=dict)
    #: Sender's SCTP: retransmission timeouts, retransmitted DATA chunks, DATA chunks sent.
    sctp: dict[str, int] = field(default_factory=dict)


class _PipeSignaling:
    """SignalPort over a line-oriented JSON pipe."""

    def __init__(self, peer_id: str, write_line: Any) -> None:
        self._peer_id = peer_id
        self._write_line = write_line

    @property
    def peer_id(self) -> str | None:
        return self._peer_id

    async def signal(self, to: str, data: Mapping[str, Any]) -> bool:
        await self._write_line({"signal": dict(data)})
        return True


class _Events:
    """Listener that turns callbacks into futures and wake-ups for the bench loops."""

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[float] = loop.create_future()
        self.closed: asyncio.Future[tuple[float, str]] = loop.create_future()
        self.writable = asyncio.Event()
        self.bytes_received = 0
        #: (send time, delivery latency) per message.
        self.latencies: list[tuple[float, float]] = []

    def on_peer_opened(self, peer_id: str, role: str) -> None:
        if not self.opened.done():
            self.opened.set_result(time.perf_counter())

    def on_peer_message(self, peer_id: str, data: bytes) -> None:
        self.bytes_received += len(data)
        if len(data) >= _STAMP.size:
            sent_s = _STAMP.unpack_from(data)[0]
            self.latencies.append((sent_s, time.monotonic() - sent_s))

    def on_peer_writable(self, peer_id: str) -> None:
        self.writable.set()

    def on_peer_closed(self, peer_id: str, reason: str) -> None:
        if not self.closed.done():
            self.closed.set_result((time.perf_counter(), reason))


def latency_summary(latencies: Sequence[tuple[float, float]], since_s: float) -> dict[str, float]:
    """p50, p95 and max of the latencies of messages sent at or after since_s."""
    values = sorted(lat for sent_s, lat in latencies if sent_s >= since_s)
    if not values:
        return {}
    p95 = values[min(len(values) - 1, int(0.95 * len(values)))]
    return {"p50": statistics.median(values), "p95": p95, "max": values[-1]}


class _SctpCounters:
    """Counts the sender association's T3 expiries and retransmitted DATA chunks (instance
    attributes shadow the class's methods, whatever tuning is in force)."""

    def __init__(self, transport: Any) -> None:
        self.counts = {"t3_expiries": 0, "retransmitted_chunks": 0, "data_chunks": 0}
        t3_expired, send_chunk = transport._t3_expired, transport._send_chunk

        def counting_t3_expired() -> None:
            self.counts["t3_expiries"] += 1
            t3_expired()

        async def counting_send_chunk(chunk: Any) -> None:
            if isinstance(chunk, sctp_tuning.sctp.DataChunk):
                self.counts["data_chunks"] += 1
                if chunk._sent_count > 1:
                    self.counts["retransmitted_chunks"] += 1
            await send_chunk(chunk)

        transport._t3_expired = counting_t3_expired
        transport._send_chunk = counting_send_chunk


def _sctp_of(manager: PeerManager, peer_id: str) -> Any:
    peer = manager._peers.get(peer_id)
    return peer.pc.sctp if peer is not None and peer.pc is not None else None


async def _run_sink(expect_bytes: int) -> None:
    """Child side: answer the offer, count bytes, report progress and CPU on stdout."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    async def write_line(obj: Mapping[str, Any]) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    events = _Events()
    manager = PeerManager(_PipeSignaling(SINK_ID, write_line), events)

    stop_since_s: list[float] = []

    async def read_signals() -> None:
        while line := await reader.readline():
            obj = json.loads(line)
            if "stop" in obj:
                stop_since_s.append(float(obj["stop"]))
            else:
                manager.handle_signal(SOURCE_ID, obj["signal"])

    reading = asyncio.create_task(read_signals())
    cpu_start_s = time.process_time()
    reported = -1
    while events.bytes_received < expect_bytes and not reading.done() and not stop_since_s:
        await asyncio.sleep(_PROGRESS_INTERVAL_S)
        if events.bytes_received != reported:
            reported = events.bytes_received
            await write_line({"progress": reported})
    since_s = stop_since_s[0] if stop_since_s else 0.0
    await write_line(
        {
            "done": events.bytes_received,
            "cpu_s": time.process_time() - cpu_start_s,
            "latency_s": latency_summary(events.latencies, since_s),
        }
    )
    await reading  # stay up until the parent closes our stdin
    await manager.close()


async def run_bench(
    total_bytes: int = 8 * 1024 * 1024,
    message_bytes: int = 16 * 1024,
    *,
    kill_after_bytes: int | None = None,
    config: RtcConfig | None = None,
    timeout_s: float = 60.0,
    duration_s: float | None = None,
    warmup_s: float = 0.0,
    child_prefix: Sequence[str] = (),
    sctp: str | None = None,
) -> BenchResult:
    """Send `total_bytes` to a child process over one data channel and time it.

    With `duration_s`, send for that long instead (total_bytes is ignored) and measure the rate
    from the receiver's progress after `warmup_s`. `child_prefix` goes before the child's
    command line (`ip netns exec NS`); `sctp` is a sctp_tuning.parse_tuning text applied here
    and in the child (None: leave both as the transport set them up).
    """
    if sctp is not None:
        sctp_tuning.apply(sctp_tuning.parse_tuning(sctp))
    if duration_s is not None:
        total_bytes = 1 << 50
        timeout_s = max(timeout_s, duration_s + 60.0)
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    child = await asyncio.create_subprocess_exec(
        *child_prefix,
        sys.executable,
        "-m",
        "streamer.bench.data_channel",
        *(["--sctp", sctp] if sctp is not None else []),
        "--child",
        str(total_bytes),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env=env,
    )
    assert child.stdin is not None and child.stdout is not None
    stdin, stdout = child.stdin, child.stdout

    async def write_line(obj: Mapping[str, Any]) -> None:
        stdin.write((json.dumps(obj) + "\n").encode())
        await stdin.drain()

    events = _Events()
    manager = PeerManager(_PipeSignaling(SOURCE_ID, write_line), events, config=config)
    progress = 0
    samples: list[tuple[float, int]] = []  # (when, bytes received) from the child's progress
    done: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

    async def read_child() -> None:
        nonlocal progress
        while line := await stdout.readline():
            obj = json.loads(line)
            if "signal" in obj:
                manager.handle_signal(SINK_ID, obj["signal"])
            elif "progress" in obj:
                progress = obj["progress"]
                samples.append((time.perf_counter(), progress))
            elif "done" in obj and not done.done():
                done.set_result(obj)

    reader = asyncio.create_task(read_child())
    killed_at: float | None = None
    try:
        async with asyncio.timeout(timeout_s):
            started = time.perf_counter()
            manager.connect(SINK_ID)
            opened_at = await events.opened
            counters = _SctpCounters(_sctp_of(manager, SINK_ID))
            cpu_start_s = time.process_time()
            payload = bytes(range(256)) * (message_bytes // 256 + 1)
            sent = 0
            end_at = opened_at + duration_s if duration_s is not None else float("inf")
            while sent < total_bytes and not events.closed.done():
                if time.perf_counter() >= end_at:
                    break
                while sent < total_bytes and manager.has_room(SINK_ID):
                    size = min(message_bytes, total_bytes - sent)
                    stamp = _STAMP.pack(time.monotonic())
                    manager.send(SINK_ID, stamp + payload[_STAMP.size : max(size, _STAMP.size)])
                    sent += size
                if (
                    kill_after_bytes is not None
                    and killed_at is None
                    and progress >= kill_after_bytes
                ):
                    child.send_signal(signal.SIGKILL)
                    killed_at = time.perf_counter()
                events.writable.clear()
                if sent < total_bytes:
                    # Woken by bufferedamountlow, or by the tick (to see progress and closes).
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(events.writable.wait(), _PROGRESS_INTERVAL_S)
            if kill_after_bytes is not None:
                while killed_at is None:  # everything is buffered: wait for the progress mark
                    if progress >= kill_after_bytes:
                        child.send_signal(signal.SIGKILL)
                        killed_at = time.perf_counter()
                    await asyncio.sleep(0.01)
                closed_at, reason = await events.closed
                return BenchResult(
                    total_bytes,
                    message_bytes,
                    opened_at - started,
                    0.0,
                    0.0,
                    0.0,
                    0.0,
                    closed_at - killed_at,
                    reason,
                )
            warm_at = opened_at + warmup_s
            if duration_s is not None:
                since_s = time.monotonic() - (time.perf_counter() - warm_at)
                await write_line({"stop": since_s})
            else:
                since_s = 0.0
            finished_obj = await done
            receiver_cpu_s = float(finished_obj["cpu_s"])
            finished = time.perf_counter()
            sender_cpu_s = time.process_time() - cpu_start_s
    finally:
        await manager.close()
        if child.returncode is None:
            stdin.close()
            try:
                await asyncio.wait_for(child.wait(), 5)
            except TimeoutError:
                child.kill()
                await child.wait()
        reader.cancel()
    if duration_s is not None:
        total_bytes, transfer_s = _window(samples, warm_at, end_at)
    else:
        transfer_s = finished - opened_at
    mbits = max(total_bytes, 1) * 8 / 1e6
    cpu_mbits = max(int(finished_obj["done"]), 1) * 8 / 1e6  # CPU counts the whole transfer
    return BenchResult(
        total_bytes=total_bytes,
        message_bytes=message_bytes,
        setup_s=opened_at - started,
        transfer_s=transfer_s,
        rate_mbps=mbits / transfer_s if transfer_s > 0 else 0.0,
        sender_cpu_s_per_mbit=sender_cpu_s / cpu_mbits,
        receiver_cpu_s_per_mbit=receiver_cpu_s / cpu_mbits,
        latency_s=dict(finished_obj.get("latency_s") or {}),
        sctp=dict(counters.counts),
    )


def _window(samples: Sequence[tuple[float, int]], start: float, end: float) -> tuple[int, float]:
    """Bytes received between the first progress sample at or after `start` and the last one
    at or before `end`, and the time between those samples."""
    inside = [(t, b) for t, b in samples if start <= t <= end]
    if len(inside) < 2:
        return 0, 0.0
    return inside[-1][1] - inside[0][1], inside[-1][0] - inside[0][0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", type=int, metavar="EXPECT_BYTES", help=argparse.SUPPRESS)
    parser.add_argument("--bytes", type=int, default=16 * 1024 * 1024, dest="total_bytes")
    parser.add_argument("--message-bytes", type=int, default=16 * 1024)
    parser.add_argument("--duration", type=float, help="send for this long (seconds)")
    parser.add_argument("--warmup", type=float, default=0.0, help="rate counted after this")
    parser.add_argument("--child-prefix", default="", help="e.g. 'ip netns exec NS'")
    parser.add_argument("--sctp", help="SCTP tuning: stock, tuned, or stock,rto_min_s=0.25,...")
    parser.add_argument("--buffer-low-bytes", type=int, default=RtcConfig.buffer_low_bytes)
    parser.add_argument("--buffer-high-bytes", type=int, default=RtcConfig.buffer_high_bytes)
    args = parser.parse_args(argv)
    if args.child is not None:
        if args.sctp is not None:
            sctp_tuning.apply(sctp_tuning.parse_tuning(args.sctp))
        asyncio.run(_run_sink(args.child))
        return 0
    config = RtcConfig(
        buffer_low_bytes=args.buffer_low_bytes, buffer_high_bytes=args.buffer_high_bytes
    )
    result = asyncio.run(
        run_bench(
            args.total_bytes,
            args.message_bytes,
            config=config,
            duration_s=args.duration,
            warmup_s=args.warmup,
            child_prefix=shlex.split(args.child_prefix),
            sctp=args.sctp,
        )
    )
    print(json.dumps(asdict(result), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
