"""Where a simulated swarm's lag comes from: how long chunks take to cross it, and the slack
viewers keep between a chunk completing and playing it.

Runs one `streamer simulate` scenario (same settings and defaults) with an observer on every
core's events and prints:
- crossing time: a chunk's release at the source -> complete at a viewer, over viewers and
  chunks (steady state: chunks released in the last half of the run), by chunk and overall;
- slack: a chunk played -> completed before it (what the adaptive lag keeps in hand);
- lag at start and at the end of each viewer's run, by when it joined.

    .venv/bin/python benchmarks/sim_spread.py --peers 1000 --duration 30
    # on the compiled core (~3x faster; same results):
    PYTHONPATH=$(.venv/bin/python -m streamer.sim.compiled) .venv/bin/python -P \\
        benchmarks/sim_spread.py --peers 1000 --duration 30
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

try:
    import streamer  # noqa: F401  (a compiled copy on PYTHONPATH comes first)
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from streamer.bench.simulate import SIMULATE_DEFAULTS
from streamer.protocol import Cancel, Have, MsgType, Piece, Request, decode_message
from streamer.sim import compiled, run_scenario
from streamer.sim.scenario import SOURCE_ID
from streamer.swarm import ChunkComplete, ChunkPlayed, Event, percentile


class HopTrace:
    """Every piece's first arrival at each peer, split into the steps of its last hop:
    announce (piece at the holder -> its have to us sent), ask (have arrived -> our request
    sent), queue (request arrived -> the holder starts sending) and wire (-> arrival)."""

    def __init__(self, latency_s: float, from_release_s: float) -> None:
        self.latency_s = latency_s
        self.from_release_s = from_release_s
        self.got: dict[tuple[str, int, int], float] = {}
        self.depth: dict[tuple[str, int, int], int] = {}
        self.have_sent: dict[tuple[str, str, int, int], float] = {}
        self.asked: dict[tuple[str, str, int, int], float] = {}
        self.asking: dict[tuple[str, int, int], str] = {}
        """(requester, seq, piece) -> the holder it is asked of now."""
        self.busy_elsewhere: dict[tuple[str, str, int, int], bool] = {}
        self.steps: dict[str, list[float]] = defaultdict(list)
        self.release_s: dict[int, float] = {}

    def __call__(self, src: str, dst: str, data: bytes, sent_s: float, arrives_s: float) -> None:
        kind = data[0]
        if kind not in (MsgType.HAVE, MsgType.REQUEST, MsgType.PIECE, MsgType.CANCEL):
            return
        msg = decode_message(data)
        if isinstance(msg, Have):
            for i, held in enumerate(msg.pieces):
                if held and (src, dst, msg.seq, i) not in self.have_sent:
                    self.have_sent[(src, dst, msg.seq, i)] = sent_s
                    # Was dst already fetching that piece from someone else when this came?
                    self.busy_elsewhere[(src, dst, msg.seq, i)] = (dst, msg.seq, i) in self.asking
        elif isinstance(msg, Request):
            for i in range(msg.first_index, msg.first_index + min(msg.count, 64)):
                self.asked[(src, dst, msg.seq, i)] = sent_s  # (requester, holder, ...)
                self.asking[(src, msg.seq, i)] = dst
        elif isinstance(msg, Cancel):
            for i in range(msg.first_index, msg.first_index + min(msg.count, 64)):
                if self.asking.get((src, msg.seq, i)) == dst:
                    del self.asking[(src, msg.seq, i)]
        elif isinstance(msg, Piece):
            self._piece(src, dst, msg, sent_s, arrives_s)

    def _piece(self, src: str, dst: str, msg: Piece, sent_s: float, arrives_s: float) -> None:
        seq, i = msg.seq, msg.index
        if src == SOURCE_ID:
            self.release_s.setdefault(seq, sent_s)  # (the source's first send: ~its release)
            self.got.setdefault((src, seq, i), self.release_s[seq])
            self.depth[(src, seq, i)] = 0
        key = (dst, seq, i)
        if key in self.got or (src, seq, i) not in self.got:
            return
        self.got[key] = arrives_s
        self.depth[key] = self.depth[(src, seq, i)] + 1
        if self.release_s.get(seq, -1.0) < self.from_release_s:
            return
        lat = self.latency_s
        at_holder = self.got[(src, seq, i)]
        have_s = self.have_sent.get((src, dst, seq, i))
        asked_s = self.asked.get((dst, src, seq, i))
        where = "source" if src == SOURCE_ID else "peer"
        self.steps[f"hop from {where}"].append(arrives_s - at_holder)
        self.asking.pop((dst, seq, i), None)
        if have_s is not None and asked_s is not None and asked_s >= have_s:
            self.steps[f"  announce ({where})"].append(have_s - at_holder)
            self.steps[f"  ask ({where})"].append(asked_s - have_s - lat)
            if self.busy_elsewhere.get((src, dst, seq, i)):
                self.steps[f"  ask, asked elsewhere ({where})"].append(asked_s - have_s - lat)
            else:
                self.steps[f"  ask, not asked yet ({where})"].append(asked_s - have_s - lat)
        if asked_s is not None:
            self.steps[f"  queue ({where})"].append(sent_s - asked_s - lat)
        self.steps[f"  wire ({where})"].append(arrives_s - sent_s)

    def report(self) -> None:
        print("\nlast hop of each piece's first arrival (chunks released in the 2nd half):")
        for name in sorted(self.steps, key=lambda n: (n.strip().split()[-1], n[0] == " ", n)):
            values = self.steps[name]
            mean = sum(values) / len(values)
            print(f"  {name:22s} mean {mean:.3f}, {_pcts(values)}")
        depths = [d for (_, seq, _), d in self.depth.items() if self.release_s.get(seq, -1.0) >= 0]
        print(f"  hops from the source: {_pcts([float(d) for d in depths])}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers", type=int, default=300)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--upload-range", default="0.5,3.0")
    parser.add_argument("--hops", action="store_true", help="trace every piece's hops (slower)")
    args = parser.parse_args()
    low, high = (float(x) for x in args.upload_range.split(","))
    scenario = replace(
        SIMULATE_DEFAULTS,
        peers=args.peers,
        duration_s=args.duration,
        seed=args.seed,
        peer_upload_ratio=(low, high),
    )

    completed: dict[tuple[str, int], float] = {}
    """(viewer, seq) -> when it completed there."""
    release_s: dict[int, float] = {}
    played: dict[str, list[tuple[int, float, float]]] = defaultdict(list)
    """viewer -> [(seq, lag, played at)]."""

    def observe(peer_id: str, event: Event, now: float) -> None:
        if isinstance(event, ChunkComplete):
            completed[(peer_id, event.seq)] = now
            release_s[event.seq] = event.header.release_us / 1e6
        elif isinstance(event, ChunkPlayed):
            played[peer_id].append((event.seq, event.lag_s, now))

    hops = HopTrace(scenario.latency_s, args.duration / 2) if args.hops else None
    result = run_scenario(scenario, observer=observe, tap=hops)
    summary = result.summary()
    viewers = set(result.viewers)
    print(
        f"{args.peers} peers, {args.duration:g} s, seed {args.seed}, core {compiled.core_kind()}:"
        f" continuity {summary['continuity_mean']:.3f} (min {summary['continuity_min']:.3f}),"
        f" lag p50/p95 {summary['lag_s_p50']:.2f}/{summary['lag_s_p95']:.2f} s,"
        f" startup {summary['startup_s_p50']:.2f} s, source {summary['source_upload_ratio']:.2f}x,"
        f" {summary['wall_s']:.0f} s wall"
    )

    steady_from = args.duration / 2
    by_seq: dict[int, list[float]] = defaultdict(list)
    for (pid, seq), when in completed.items():
        if pid in viewers and release_s[seq] >= steady_from:
            by_seq[seq].append(when - release_s[seq])
    everything = [d for ds in by_seq.values() for d in ds]
    print("\ncrossing time, release -> complete at a viewer (chunks released in the 2nd half):")
    print(f"  all: {_pcts(everything)}")
    for seq in sorted(by_seq):
        print(f"  seq {seq:3d}: {_pcts(by_seq[seq])}")

    slack = [
        at - completed[(pid, seq)]
        for pid in viewers
        for seq, _lag, at in played.get(pid, [])
        if (pid, seq) in completed
    ]
    print(f"\nslack, complete -> played: {_pcts(slack)}")

    start_crossing = [
        completed[(pid, runs[0][0])] - release_s[runs[0][0]]
        for pid, runs in played.items()
        if pid in viewers and runs and (pid, runs[0][0]) in completed
    ]
    print(f"crossing time of each viewer's first chunk: {_pcts(start_crossing)}")
    first = [runs[0][1] for pid, runs in played.items() if pid in viewers and runs]
    last = [runs[-1][1] for pid, runs in played.items() if pid in viewers and runs]
    print(f"lag of each viewer's first chunk: {_pcts(first)}")
    print(f"lag of each viewer's last chunk:  {_pcts(last)}")
    if hops is not None:
        hops.report()
    return 0


def _pcts(values: list[float]) -> str:
    if not values:
        return "-"
    marks = (0.1, 0.5, 0.9, 0.99)
    parts = [f"p{round(m * 100)} {percentile(values, m):.2f}" for m in marks]
    return f"{', '.join(parts)}, max {max(values):.2f} s (n={len(values)})"


if __name__ == "__main__":
    sys.exit(main())
