"""Where a piece's time goes between two nodes, from their `--hop-trace` files (pure).

Nodes on one machine share its clock, so a request traced as sent by one node and as received by
another gives its time on the way; the same for a piece. Three parts of every piece asked and
served (`streamer.node.hop_trace` has the line format):

- request transit: requester sent the request -> holder received it (behind the requester's own
  uploads on its uplink, and SCTP's recovery when the packet was lost);
- holder queue: holder received it -> holder handed the piece to its transport (the upload
  queue of the swarm core, and the uplink gate);
- piece transit: holder handed the piece over -> requester received it (behind the holder's
  other uploads, and loss recovery);

and their sum, what the requester waits (asked -> received; `total_s`).

Each is summed up by the kind of node it waits at: the requester's kind for request transit,
the holder's for the other two. Matching is by (sender, receiver, seq, first, count) for
requests, in order, and (holder, requester, seq, index) for pieces: the first piece handed over
after the request came, and the first received after it was handed over.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

PARTS = ("request_transit_s", "holder_queue_s", "piece_transit_s", "total_s")


@dataclass
class NodeTrace:
    """One node's trace: its peer ids and its requests and pieces, each in time order."""

    peer_ids: set[str] = field(default_factory=set)
    requests: dict[tuple[bool, str, int, int, int], list[float]] = field(default_factory=dict)
    """(outgoing, peer id, seq, first, count) -> times."""
    pieces: dict[tuple[bool, str, int, int], list[float]] = field(default_factory=dict)
    """(outgoing, peer id, seq, index) -> times."""


def parse_trace(lines: Iterable[str]) -> NodeTrace:
    """A trace file's lines; lines that do not parse (a node killed mid-write) are skipped."""
    trace = NodeTrace()
    for line in lines:
        parts = line.split()
        try:
            t = float(parts[0])
            if parts[1] == "me" and len(parts) == 3:
                trace.peer_ids.add(parts[2])
            elif parts[3] == "R" and len(parts) == 7:
                key = (parts[1] == ">", parts[2], int(parts[4]), int(parts[5]), int(parts[6]))
                trace.requests.setdefault(key, []).append(t)
            elif parts[3] == "P" and len(parts) == 6:
                piece = (parts[1] == ">", parts[2], int(parts[4]), int(parts[5]))
                trace.pieces.setdefault(piece, []).append(t)
        except (IndexError, ValueError):
            continue
    return trace


def _first_at_or_after(times: list[float], t: float) -> float | None:
    i = bisect_left(times, t)
    return times[i] if i < len(times) else None


def hop_samples(traces: Mapping[str, NodeTrace]) -> dict[str, dict[str, list[float]]]:
    """part -> node name -> seconds, over every request and piece both ends traced."""
    name_of = {pid: name for name, trace in traces.items() for pid in trace.peer_ids}
    samples: dict[str, dict[str, list[float]]] = {part: defaultdict(list) for part in PARTS}
    for requester, trace in traces.items():
        for (outgoing, peer, seq, first, count), sent in trace.requests.items():
            holder = name_of.get(peer)
            if not outgoing or holder is None:
                continue
            holder_trace = traces[holder]
            for own_id in trace.peer_ids:
                came = holder_trace.requests.get((False, own_id, seq, first, count))
                if not came:
                    continue
                for sent_s, came_s in zip(sent, came, strict=False):
                    samples["request_transit_s"][requester].append(came_s - sent_s)
                    request = (own_id, seq, first, count, sent_s, came_s)
                    _pieces(samples, trace, holder, holder_trace, request)
    return {part: dict(by_node) for part, by_node in samples.items()}


def _pieces(
    samples: dict[str, dict[str, list[float]]],
    trace: NodeTrace,
    holder: str,
    holder_trace: NodeTrace,
    request: tuple[str, int, int, int, float, float],
) -> None:
    """The holder queue, piece transit and total of each piece of one request the holder
    received (request: the requester's id as the holder knows it, seq, first, count, when it
    was sent, when it came)."""
    requester_id, seq, first, count, sent_s, came_s = request
    holder_ids = holder_trace.peer_ids
    for index in range(first, first + count):
        handed = holder_trace.pieces.get((True, requester_id, seq, index))
        handed_s = _first_at_or_after(handed, came_s) if handed else None
        if handed_s is None:
            continue  # cancelled, came from elsewhere, or the request was for pieces absent
        samples["holder_queue_s"][holder].append(handed_s - came_s)
        for holder_id in holder_ids:
            got = trace.pieces.get((False, holder_id, seq, index))
            got_s = _first_at_or_after(got, handed_s) if got else None
            if got_s is not None:
                samples["piece_transit_s"][holder].append(got_s - handed_s)
                samples["total_s"][holder].append(got_s - sent_s)
                break


def quantiles(values: list[float]) -> dict[str, Any]:
    """n, p50, p90, p99 and max, in seconds rounded to the millisecond."""
    ordered = sorted(values)
    if not ordered:
        return {"n": 0}

    def q(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))], 3)

    return {"n": len(ordered), "p50": q(0.5), "p90": q(0.9), "p99": q(0.99), "max": q(1.0)}


def summarise(
    samples: Mapping[str, Mapping[str, list[float]]], kind_of: Mapping[str, str]
) -> dict[str, Any]:
    """part -> {"by_kind": kind -> quantiles, "by_node": node -> quantiles}."""
    out: dict[str, Any] = {}
    for part, by_node in samples.items():
        by_kind: dict[str, list[float]] = defaultdict(list)
        for node, values in by_node.items():
            by_kind[kind_of.get(node, "?")].extend(values)
        out[part] = {
            "by_kind": {kind: quantiles(v) for kind, v in sorted(by_kind.items())},
            "by_node": {node: quantiles(v) for node, v in sorted(by_node.items())},
        }
    return out


def report_lines(summary: Mapping[str, Any]) -> list[str]:
    """A few lines for the bed's report: p50 / p90 / p99 of each part, by kind of node."""
    lines = ["where a piece's time goes (p50 / p90 / p99 s, by the node it waits at):"]
    labels = {
        "request_transit_s": "request on the way (by requester)",
        "holder_queue_s": "in the holder's queue",
        "piece_transit_s": "piece on the way (by holder)",
        "total_s": "asked to received (by holder)",
    }
    for part in PARTS:
        figures = summary.get(part, {}).get("by_kind", {})
        cells = [
            f"{kind} {f['p50']:.2f}/{f['p90']:.2f}/{f['p99']:.2f} (n={f['n']})"
            for kind, f in figures.items()
            if f.get("n")
        ]
        lines.append(f"  {labels[part]}: " + ("; ".join(cells) if cells else "-"))
    return lines
