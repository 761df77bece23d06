"""Where a simulated swarm's lag comes from: how long chunks take to cross it, and the slack
viewers keep between a chunk completing and playing it.

Runs one `streamer simulate` scenario (same settings and defaults) with an observer on every
core's events and prints:
- crossing time: a chunk's release at the source -> complete at a viewer, over viewers and
  chunks (steady state: chunks released in the last half of the run), by chunk and overall;
- slack: a chunk played -> completed before it (what the adaptive lag keeps in hand);
- lag at start and at the end of each viewer's run, by when it joined;
- with --hops, each step of a piece's last hop, for every piece and for the critical piece of
  each completed chunk (the last of its pieces to arrive, what the chunk waited for).

    .venv/bin/python benchmarks/sim_spread.py --peers 1000 --duration 30
    .venv/bin/python benchmarks/sim_spread.py --profile netbed --duration 60 --seed 1 --hops
    # on the compiled core (~3x faster; same results):
    PYTHONPATH=$(.venv/bin/python -m streamer.sim.compiled) .venv/bin/python -P \\
        benchmarks/sim_spread.py --peers 1000 --duration 30
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

try:
    import streamer  # noqa: F401  (a compiled copy on PYTHONPATH comes first)
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from streamer.bench.simulate import SIMULATE_DEFAULTS
from streamer.netbed.topology import Profile
from streamer.protocol import Have, MsgType, Piece, Request, decode_message
from streamer.sim import compiled, run_scenario
from streamer.sim.bed import BedScenario, run_bed_scenario
from streamer.sim.scenario import SOURCE_ID
from streamer.swarm import ChunkComplete, ChunkPlayed, Event, percentile


class HopTrace:
    """Every piece's first arrival at each peer, split into the steps of its last hop:
    announce (piece at the holder -> its have arrives at us), ask (-> our request leaves us),
    request (-> it arrives at the holder), queue (-> the holder puts the piece on its wire) and
    wire (-> it arrives). Times are arrivals as the network model delivers them, so per-link
    delays, uplink queues and retransmissions land in the step they belong to.

    The same steps for the critical piece of each completed chunk (the last to arrive: what
    the chunk waited for) are kept apart, by the receiver's kind (`kind_of`)."""

    def __init__(self, from_release_s: float, kind_of: Callable[[str], str | None]) -> None:
        self.from_release_s = from_release_s
        self.kind_of = kind_of
        self.got: dict[tuple[str, int, int], float] = {}
        self.holder: dict[tuple[str, int, int], str] = {}
        self.depth: dict[tuple[str, int, int], int] = {}
        self.have_arrived: dict[tuple[str, str, int, int], float] = {}
        self.asked: dict[tuple[str, str, int, int], tuple[float, float]] = {}
        """(holder, requester, seq, piece) -> (request sent, request arrived)."""
        self.piece_sent: dict[tuple[str, str, int, int], float] = {}
        self.steps: dict[str, list[float]] = defaultdict(list)
        self.release_s: dict[int, float] = {}

    def __call__(self, src: str, dst: str, data: bytes, sent_s: float, arrives_s: float) -> None:
        kind = data[0]
        if kind not in (MsgType.HAVE, MsgType.REQUEST, MsgType.PIECE):
            return
        msg = decode_message(data)
        if isinstance(msg, Have):
            for i, held in enumerate(msg.pieces):
                if held:
                    self.have_arrived.setdefault((src, dst, msg.seq, i), arrives_s)
        elif isinstance(msg, Request):
            for i in range(msg.first_index, msg.first_index + min(msg.count, 64)):
                self.asked[(dst, src, msg.seq, i)] = (sent_s, arrives_s)
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
        self.holder[key] = src
        self.depth[key] = self.depth[(src, seq, i)] + 1
        self.piece_sent[(src, dst, seq, i)] = sent_s
        if self.release_s.get(seq, -1.0) >= self.from_release_s:
            where = "source" if src == SOURCE_ID else "peer"
            self._record(f"from {where}", dst, seq, i)

    def _record(self, label: str, dst: str, seq: int, i: int) -> None:
        key = (dst, seq, i)
        src = self.holder[key]
        at_holder = self.got[(src, seq, i)]
        steps = self.steps
        steps[f"hop {label}"].append(self.got[key] - at_holder)
        have_s = self.have_arrived.get((src, dst, seq, i))
        asked = self.asked.get((src, dst, seq, i))
        if have_s is not None and asked is not None and asked[0] >= have_s:
            steps[f"  announce ({label})"].append(have_s - at_holder)
            steps[f"  ask ({label})"].append(asked[0] - have_s)
        if asked is not None:
            steps[f"  request ({label})"].append(asked[1] - asked[0])
            steps[f"  queue ({label})"].append(self.piece_sent[(src, dst, seq, i)] - asked[1])
        steps[f"  wire ({label})"].append(self.got[key] - self.piece_sent[(src, dst, seq, i)])

    def completed(self, peer_id: str, seq: int, now: float) -> None:
        """A chunk completed at peer_id: trace its critical piece (the last to arrive)."""
        kind = self.kind_of(peer_id)
        if kind is None or self.release_s.get(seq, -1.0) < self.from_release_s:
            return
        arrived = [
            (self.got[(peer_id, seq, i)], i) for i in range(1024) if (peer_id, seq, i) in self.got
        ]
        if not arrived:
            return
        _, last = max(arrived)
        label = f"critical piece, {kind}"
        self.steps[f"{label}: release -> at its holder"].append(
            self.got[(self.holder[(peer_id, seq, last)], seq, last)] - self.release_s[seq]
        )
        self._record(label, peer_id, seq, last)

    def report(self) -> None:
        print("\nlast hop of each piece's first arrival (chunks released in the 2nd half):")
        for name in sorted(self.steps, key=lambda n: (n.strip().split("(")[-1], n[0] == " ", n)):
            values = self.steps[name]
            mean = sum(values) / len(values)
            print(f"  {name:46s} mean {mean:.3f}, {_pcts(values)}")
        depths = [d for (_, seq, _), d in self.depth.items() if self.release_s.get(seq, -1.0) >= 0]
        print(f"  hops from the source: {_pcts([float(d) for d in depths])}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers", type=int, default=300)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--upload-range", default="0.5,3.0")
    parser.add_argument("--hops", action="store_true", help="trace every piece's hops (slower)")
    parser.add_argument(
        "--profile",
        choices=("default", "netbed"),
        default="default",
        help="netbed: the sites of `streamer netbed` (--seed lays them out; --peers is ignored)",
    )
    args = parser.parse_args()

    completed: dict[tuple[str, int], float] = {}
    """(viewer, seq) -> when it completed there."""
    release_s: dict[int, float] = {}
    played: dict[str, list[tuple[int, float, float]]] = defaultdict(list)
    """viewer -> [(seq, lag, played at)]."""
    hops = HopTrace(args.duration / 2, _kind_of) if args.hops else None

    def observe(peer_id: str, event: Event, now: float) -> None:
        if isinstance(event, ChunkComplete):
            completed[(peer_id, event.seq)] = now
            release_s[event.seq] = event.header.release_us / 1e6
            if hops is not None:
                hops.completed(peer_id, event.seq, now)
        elif isinstance(event, ChunkPlayed):
            played[peer_id].append((event.seq, event.lag_s, now))

    if args.profile == "netbed":
        bed = BedScenario(profile=Profile(seed=args.seed), duration_s=args.duration, seed=args.seed)
        bed_result = run_bed_scenario(bed, observer=observe, tap=hops)
        summary = bed_result.figures()
        summary["wall_s"] = bed_result.wall_s
        viewers = set(bed_result.per_viewer)
        what = f"the bed's {len(viewers)} viewers"
    else:
        low, high = (float(x) for x in args.upload_range.split(","))
        scenario = replace(
            SIMULATE_DEFAULTS,
            peers=args.peers,
            duration_s=args.duration,
            seed=args.seed,
            peer_upload_ratio=(low, high),
        )
        result = run_scenario(scenario, observer=observe, tap=hops)
        summary = result.summary()
        viewers = set(result.viewers)
        what = f"{args.peers} peers"
    print(
        f"{what}, {args.duration:g} s, seed {args.seed}, core {compiled.core_kind()}:"
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


def _kind_of(peer_id: str) -> str | None:
    """Whose chunks the critical-piece trace counts: relays apart from viewers (bed names)."""
    if peer_id == SOURCE_ID:
        return None
    return "relay" if peer_id.startswith("relay") else "viewer"


def _pcts(values: list[float]) -> str:
    if not values:
        return "-"
    marks = (0.1, 0.5, 0.9, 0.99)
    parts = [f"p{round(m * 100)} {percentile(values, m):.2f}" for m in marks]
    return f"{', '.join(parts)}, max {max(values):.2f} s (n={len(values)})"


if __name__ == "__main__":
    sys.exit(main())
