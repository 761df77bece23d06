"""The data channel alone on the namespace bed: aiortc's SCTP, stock and tuned, against TCP.

A 2-site bed from streamer.netbed's own parts (namespaces.create, the delay/loss shim started by
streamer.netbed.run): `src` sends through a tbf-shaped uplink (default 2 Mbit/s, 200 ms queue),
`dst` receives. For each profile (RTT, loss) the shim is restarted with the profile's links: each
site's one-way delay is RTT/4, and the loss sits on src's link, so data and SACKs/ACKs each
cross a path with that loss. Per profile, one after the other on the same links:

- the two-process data-channel harness (`python -m streamer.bench.data_channel --duration ...`,
  sender in src, receiver in dst through `ip netns exec`) once per SCTP variant (default: stock
  aiortc, then streamer.transport.sctp_tuning's TUNED), with a 64 KiB send buffer;
- TCP (this script's --tcp-sink / --tcp-source roles), 16 KiB messages, at most 64 KiB unsent
  (TCP_NOTSENT_LOWAT, the counterpart of the data channel's send buffer).

Reported: Mbit/s after the warm-up (received bytes), and how long messages took from send() to
delivery (p50 / p95 / max; a small message queued behind data waits as long), the sender's SCTP
timeouts and retransmitted chunks. Needs root; the bed is removed on every way out.

    sudo .venv/bin/python benchmarks/sctp_on_bed.py                       # stock vs tuned vs TCP
    sudo .venv/bin/python benchmarks/sctp_on_bed.py --profiles 100:1 \\
        --variants 'stock;stock,rto_min_s=0.25;stock,t3_skips_acked=1' --no-tcp
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from streamer.netbed import namespaces  # noqa: E402
from streamer.netbed.run import RunOptions, in_site, start_shim  # noqa: E402
from streamer.netbed.timing import LinkProfile  # noqa: E402
from streamer.netbed.topology import Bed, Site  # noqa: E402

TCP_PORT = 5201
MESSAGE_BYTES = 16 * 1024
SEND_BUFFER_BYTES = 64 * 1024
STAMP = struct.Struct("!d")
TCP_NOTSENT_LOWAT = 25  # linux/tcp.h


@dataclass(frozen=True)
class Profile:
    rtt_ms: float
    loss: float

    @property
    def label(self) -> str:
        return f"{self.rtt_ms:g} ms, {self.loss * 100:g}%"


def parse_profiles(text: str) -> list[Profile]:
    """'50:0,100:0.5' -> RTT 50 ms without loss, RTT 100 ms with 0.5% loss."""
    profiles = []
    for part in text.split(","):
        rtt, _, loss = part.partition(":")
        profiles.append(Profile(float(rtt), float(loss or 0) / 100))
    return profiles


def make_bed(prefix: str, profile: Profile, uplink_bps: int, queue_s: float) -> Bed:
    one_way_s = profile.rtt_ms / 4e3
    src = Site(
        "src", "broadcaster", 2, "none", LinkProfile(one_way_s, 0.0, profile.loss),
        uplink_bps, queue_s,
    )  # fmt: skip
    dst = Site("dst", "watcher", 3, "none", LinkProfile(one_way_s), None)
    return Bed(prefix, (src, dst))


# -- TCP roles (run inside the namespaces) --------------------------------------------------------


def tcp_sink(host: str, duration_s: float, warmup_s: float) -> dict[str, Any]:
    with socket.create_server((host, TCP_PORT)) as server:
        print("ready", flush=True)
        conn, _ = server.accept()
    with conn:
        first_s: float | None = None
        samples: list[tuple[float, int]] = []
        latencies: list[tuple[float, float]] = []
        received = 0
        pending = b""
        while data := conn.recv(1 << 16):
            now_s = time.monotonic()
            first_s = first_s if first_s is not None else now_s
            received += len(data)
            samples.append((now_s, received))
            pending += data
            while len(pending) >= MESSAGE_BYTES:
                sent_s = STAMP.unpack_from(pending)[0]
                latencies.append((sent_s, now_s - sent_s))
                pending = pending[MESSAGE_BYTES:]
    assert first_s is not None
    start, end = first_s + warmup_s, first_s + duration_s
    inside = [(t, b) for t, b in samples if start <= t <= end]
    rate = 8 * (inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0]) / 1e6
    values = sorted(lat for sent_s, lat in latencies if sent_s >= start)
    latency = {
        "p50": statistics.median(values),
        "p95": values[int(0.95 * (len(values) - 1))],
        "max": values[-1],
    }
    return {"rate_mbps": rate, "latency_s": latency}


def tcp_source(host: str, duration_s: float) -> None:
    with socket.create_connection((host, TCP_PORT), timeout=10) as conn:
        conn.setsockopt(socket.IPPROTO_TCP, TCP_NOTSENT_LOWAT, SEND_BUFFER_BYTES)
        payload = bytes(MESSAGE_BYTES - STAMP.size)
        end_s = time.monotonic() + duration_s + 0.5
        while time.monotonic() < end_s:
            select.select([], [conn], [], 0.1)
            conn.sendall(STAMP.pack(time.monotonic()) + payload)


# -- the bed --------------------------------------------------------------------------------------


def run_child(argv: list[str], timeout_s: float) -> dict[str, Any]:
    """Run a command, return the JSON object its stdout ends with (or an error)."""
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"error": "timeout"}
    text = out.stdout.strip()
    start = text.rfind("\n{")
    try:
        return dict(json.loads(text[start + 1 :] if start >= 0 else text))
    except ValueError:
        return {"error": (out.stderr.strip().splitlines() or ["no output"])[-1][:200]}


def run_sctp(bed: Bed, variant: str, args: argparse.Namespace) -> dict[str, Any]:
    src, dst = bed.site("src"), bed.site("dst")
    argv = [
        *in_site(bed, src), sys.executable, "-m", "streamer.bench.data_channel",
        "--duration", str(args.duration), "--warmup", str(args.warmup), "--sctp", variant,
        "--child-prefix", " ".join(in_site(bed, dst)), "--message-bytes", str(MESSAGE_BYTES),
        "--buffer-high-bytes", str(SEND_BUFFER_BYTES),
        "--buffer-low-bytes", str(SEND_BUFFER_BYTES // 2),
    ]  # fmt: skip
    return run_child(argv, args.duration + 90)


def run_tcp(bed: Bed, args: argparse.Namespace) -> dict[str, Any]:
    src, dst = bed.site("src"), bed.site("dst")
    me = [sys.executable, str(Path(__file__).resolve())]
    timing = ["--duration", str(args.duration), "--warmup", str(args.warmup)]
    sink = subprocess.Popen(
        [*in_site(bed, dst), *me, "--tcp-sink", dst.host_ip, *timing],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert sink.stdout is not None
        if sink.stdout.readline().strip() != "ready":
            return {"error": "the TCP sink did not start"}
        subprocess.run(
            [*in_site(bed, src), *me, "--tcp-source", dst.host_ip, *timing],
            timeout=args.duration + 30,
            check=False,
        )
        out, _ = sink.communicate(timeout=30)
        return dict(json.loads(out))
    except (subprocess.TimeoutExpired, ValueError) as error:
        return {"error": str(error)[:200]}
    finally:
        if sink.poll() is None:
            sink.kill()
            sink.wait()


def measure(args: argparse.Namespace, prefix: str, workdir: Path) -> list[dict[str, Any]]:
    from streamer.bench.procs import ProcessGroup

    profiles = parse_profiles(args.profiles)
    variants = [v for v in args.variants.split(";") if v]
    first = make_bed(prefix, profiles[0], args.uplink_bps, args.queue_ms / 1e3)
    created = first.namespaces()
    rows: list[dict[str, Any]] = []
    try:
        namespaces.create(first, "shim")
        options = RunOptions(Path("-"), workdir, 0.0, 0.0, 1.0, delay_mode="shim", seed=args.seed)
        for profile in profiles:
            bed = make_bed(prefix, profile, args.uplink_bps, args.queue_ms / 1e3)
            with ProcessGroup(workdir, kill_after_s=5.0, die_with_parent=True) as group:
                start_shim(group, bed, options)
                for _ in range(args.repeats):
                    for variant in variants:
                        result = run_sctp(bed, variant, args)
                        rows.append({"profile": profile.label, "what": variant, **result})
                        print(summary_line(rows[-1]), flush=True)
                    if args.tcp:
                        rows.append({"profile": profile.label, "what": "tcp", **run_tcp(bed, args)})
                        print(summary_line(rows[-1]), flush=True)
    finally:
        namespaces.destroy(created)
    return rows


def summary_line(row: dict[str, Any]) -> str:
    if "error" in row:
        return f"{row['profile']:>14} | {row['what']:<40} | error: {row['error']}"
    lat = row.get("latency_s") or {}
    sctp = row.get("sctp") or {}
    extra = (
        f" | T3 {sctp['t3_expiries']}, rtx {sctp['retransmitted_chunks']}/{sctp['data_chunks']}"
        if sctp
        else ""
    )
    return (
        f"{row['profile']:>14} | {row['what']:<40} | {row['rate_mbps']:5.2f} Mbit/s | latency "
        f"{lat.get('p50', 0):.2f} / {lat.get('p95', 0):.2f} / {lat.get('max', 0):.2f} s{extra}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", default="50:0,50:1,100:0,100:0.5,100:1,200:0,200:1",
                        help="RTT_MS:LOSS_PERCENT,...")  # fmt: skip
    parser.add_argument("--variants", default="stock;tuned", help="SCTP tunings, ';'-separated")
    parser.add_argument("--no-tcp", dest="tcp", action="store_false")
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--uplink-bps", type=int, default=2_000_000)
    parser.add_argument("--queue-ms", type=float, default=200.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--tcp-sink", metavar="HOST", help=argparse.SUPPRESS)
    parser.add_argument("--tcp-source", metavar="HOST", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.tcp_sink:
        print(json.dumps(tcp_sink(args.tcp_sink, args.duration, args.warmup)), flush=True)
        return 0
    if args.tcp_source:
        tcp_source(args.tcp_source, args.duration)
        return 0
    namespaces.check_privileges()

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    prefix = namespaces.prefix_for(os.getpid())
    with tempfile.TemporaryDirectory(prefix="sctp-bed-") as tmp:
        rows = measure(args, prefix, Path(tmp))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
