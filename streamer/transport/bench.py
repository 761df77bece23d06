"""Data-channel throughput between two processes: `python -m streamer.transport.bench`.

Why: aiortc's SCTP is pure Python, so a data channel's speed is CPU-bound, and relay capacity
(viewers per relay process) follows from it. This measures one direction between two real
processes on this machine: setup time, throughput with flow control by bufferedAmount, and CPU
seconds per transferred Mbit on each side. The two processes exchange their offer/answer over
the child's stdin/stdout (one JSON object per line), so no server is involved.

The same harness lets tests kill the receiving process mid-transfer (`kill_after_bytes`) and
measure how long the sender takes to notice.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from streamer.transport.rtc import PeerManager, RtcConfig

SOURCE_ID = "source"
SINK_ID = "sink"
_PROGRESS_INTERVAL_S = 0.1


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

    def on_peer_opened(self, peer_id: str, role: str) -> None:
        if not self.opened.done():
            self.opened.set_result(time.perf_counter())

    def on_peer_message(self, peer_id: str, data: bytes) -> None:
        self.bytes_received += len(data)

    def on_peer_writable(self, peer_id: str) -> None:
        self.writable.set()

    def on_peer_closed(self, peer_id: str, reason: str) -> None:
        if not self.closed.done():
            self.closed.set_result((time.perf_counter(), reason))


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

    async def read_signals() -> None:
        while line := await reader.readline():
            manager.handle_signal(SOURCE_ID, json.loads(line)["signal"])

    reading = asyncio.create_task(read_signals())
    cpu_start_s = time.process_time()
    reported = -1
    while events.bytes_received < expect_bytes and not reading.done():
        await asyncio.sleep(_PROGRESS_INTERVAL_S)
        if events.bytes_received != reported:
            reported = events.bytes_received
            await write_line({"progress": reported})
    await write_line({"done": events.bytes_received, "cpu_s": time.process_time() - cpu_start_s})
    await reading  # stay up until the parent closes our stdin
    await manager.close()


async def run_bench(
    total_bytes: int = 8 * 1024 * 1024,
    message_bytes: int = 16 * 1024,
    *,
    kill_after_bytes: int | None = None,
    config: RtcConfig | None = None,
    timeout_s: float = 60.0,
) -> BenchResult:
    """Send `total_bytes` to a child process over one data channel and time it."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "streamer.transport.bench",
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
    done: asyncio.Future[float] = asyncio.get_running_loop().create_future()

    async def read_child() -> None:
        nonlocal progress
        while line := await stdout.readline():
            obj = json.loads(line)
            if "signal" in obj:
                manager.handle_signal(SINK_ID, obj["signal"])
            elif "progress" in obj:
                progress = obj["progress"]
            elif "done" in obj and not done.done():
                done.set_result(float(obj["cpu_s"]))

    reader = asyncio.create_task(read_child())
    killed_at: float | None = None
    try:
        async with asyncio.timeout(timeout_s):
            started = time.perf_counter()
            manager.connect(SINK_ID)
            opened_at = await events.opened
            cpu_start_s = time.process_time()
            payload = bytes(range(256)) * (message_bytes // 256 + 1)
            sent = 0
            while sent < total_bytes and not events.closed.done():
                while sent < total_bytes and manager.has_room(SINK_ID):
                    size = min(message_bytes, total_bytes - sent)
                    manager.send(SINK_ID, payload[:size])
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
            receiver_cpu_s = await done
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
    transfer_s = finished - opened_at
    mbits = total_bytes * 8 / 1e6
    return BenchResult(
        total_bytes=total_bytes,
        message_bytes=message_bytes,
        setup_s=opened_at - started,
        transfer_s=transfer_s,
        rate_mbps=mbits / transfer_s,
        sender_cpu_s_per_mbit=sender_cpu_s / mbits,
        receiver_cpu_s_per_mbit=receiver_cpu_s / mbits,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", type=int, metavar="EXPECT_BYTES", help=argparse.SUPPRESS)
    parser.add_argument("--bytes", type=int, default=16 * 1024 * 1024, dest="total_bytes")
    parser.add_argument("--message-bytes", type=int, default=16 * 1024)
    args = parser.parse_args(argv)
    if args.child is not None:
        asyncio.run(_run_sink(args.child))
        return 0
    result = asyncio.run(run_bench(args.total_bytes, args.message_bytes))
    print(json.dumps(asdict(result), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
