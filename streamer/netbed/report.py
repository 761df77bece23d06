"""The bed's tables: each site's profile, then each viewer's figures in the swarm and client-server.

Pure: dicts in (topology.describe_sites rows, stats files as `--stats-json` writes them), text out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from streamer.bench.table import BED_ROWS, bench_table, fmt, render
from streamer.netbed import hops


def _figure(stats: Mapping[str, Any], key: str, digits: int) -> str:
    """A stats figure as a number (a page writes whole numbers as JSON integers: 1 not 1.0)."""
    value = stats.get(key)
    return fmt(float(value) if isinstance(value, int | float) else value, digits)


def share_from_peers(stats: Mapping[str, Any]) -> float | None:
    from_peers = int(stats.get("bytes_from_peers") or 0)
    total = from_peers + int(stats.get("bytes_from_source") or 0)
    return from_peers / total if total else None


def sites_table(sites: Sequence[Mapping[str, Any]], stream_bps: float) -> str:
    rows = []
    for s in sites:
        uplink = s.get("uplink_bps")
        rows.append(
            [
                str(s["site"]),
                str(s["role"]),
                str(s["nat"]),
                str(s["address"]),
                fmt(s["one_way_delay_ms"], 1),
                fmt(s["jitter_ms"], 1),
                fmt(100 * float(s["loss"]), 2),
                "-" if uplink is None else f"{uplink / 1e6:.2f}",
                "-" if uplink is None else f"{uplink / stream_bps:.1f}x",
            ]
        )
    header = [
        "site",
        "role",
        "NAT",
        "address",
        "delay ms",
        "jitter ms",
        "loss %",
        "up Mbit/s",
        "up",
    ]
    return render(header, rows)


def picture_stalled_s(stats: Mapping[str, Any]) -> float | None:
    """How long the picture stood still: a page's <video> element (stalled_s), else the core's
    playout (stall_s, what `streamer watch --output` records)."""
    value = stats.get("stalled_s", stats.get("stall_s"))
    return None if value is None else float(value)


def viewers_table(
    sites: Sequence[Mapping[str, Any]],
    swarm: Mapping[str, Mapping[str, Any]],
    baseline: Mapping[str, Mapping[str, Any]] | None,
    src_delay_ms: float | None,
) -> str:
    """One row per viewer: continuity, startup, lag p50/p95, picture stalled, peer share; then
    client-server."""
    rows = []
    for s in sites:
        name = str(s["site"])
        if name not in swarm:
            continue
        p2p = swarm[name]
        cs = (baseline or {}).get(name, {})
        rtt_ms = None if src_delay_ms is None else 2 * (float(s["one_way_delay_ms"]) + src_delay_ms)
        rows.append(
            [
                name,
                str(s["nat"]),
                fmt(rtt_ms, 0),
                _figure(p2p, "continuity", 3),
                _figure(p2p, "startup_s", 2),
                _figure(p2p, "lag_s_p50", 2),
                _figure(p2p, "lag_s_p95", 2),
                fmt(picture_stalled_s(p2p), 2),
                fmt(share_from_peers(p2p), 2),
                _figure(cs, "continuity", 3),
                _figure(cs, "startup_s", 2),
                _figure(cs, "lag_s_p50", 2),
                _figure(cs, "lag_s_p95", 2),
            ]
        )
    header = [
        "viewer", "NAT", "RTT src ms", "cont.", "startup s", "lag p50", "lag p95", "stalled s",
        "from peers",
        "CS cont.", "CS startup", "CS lag p50", "CS lag p95",
    ]  # fmt: skip
    return render(header, rows)


def machine_line(swarm: Mapping[str, Any]) -> str | None:
    """The machine's load during the swarm half and how late the CLI peers' event loops ran
    (p99): a bed on too small a machine delays every message at every hop."""
    busy = swarm.get("machine_busy_cores")
    lags = swarm.get("loop_lag_p99_ms") or {}
    if busy is None and not lags:
        return None
    parts = [f"machine: {fmt(busy)} cores busy during the swarm half"]
    if lags:
        parts.append(
            "event loops late p99 "
            + ", ".join(f"{name} {lag:.0f} ms" for name, lag in sorted(lags.items()))
        )
    return "; ".join(parts)


def report(result: Mapping[str, Any]) -> str:
    sites = result["sites"]
    src = next(s for s in sites if s["role"] == "broadcaster")
    swarm = result["swarm"]
    baseline = result.get("baseline") or {"figures": {}, "per_viewer": {}}
    applied = result["delay_mode"] != "none"
    lines = [
        f"netbed: {result['command']}",
        f"stream {result['stream_rate_bps'] / 1e6:.2f} Mbit/s, delays and loss by "
        f"{result['delay_mode']}, {result['machine']}",
        "",
        sites_table(sites, result["stream_rate_bps"]),
        *([] if applied else ["(--delay none: the delays, jitter and loss above are not applied)"]),
        "",
        viewers_table(
            sites,
            swarm["per_viewer"],
            baseline["per_viewer"],
            float(src["one_way_delay_ms"]) if applied else None,
        ),
        "",
        bench_table(swarm["figures"], baseline["figures"], BED_ROWS),
    ]
    for name, relay in swarm.get("relays", {}).items():
        uploaded, lifetime_s = relay.get("bytes_uploaded"), relay.get("duration_s")
        rate = 8 * uploaded / lifetime_s / 1e6 if uploaded and lifetime_s else None
        lines.append(f"{name}: uploaded {fmt(rate)} Mbit/s on average")
    if (line := machine_line(swarm)) is not None:
        lines.append(line)
    if swarm.get("hop_times"):
        lines.extend(hops.report_lines(swarm["hop_times"]))
    if swarm.get("turn_allocations") is not None:
        lines.append(f"TURN allocations (relayed connections): {swarm['turn_allocations']}")
    missing = swarm["figures"].get("viewers_without_stats")
    if missing:
        lines.append(f"viewers that wrote no stats (counted as continuity 0): {missing}")
    return "\n".join(lines)
