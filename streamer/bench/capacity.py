"""Relay capacity, the pure part: CPU shares from samples, one step's figures, the stop rule.

A capacity run steps the number of viewers of one relay (10, 20, 30, ...) and stops at the first
step that does not hold: a viewer below the continuity floor, a viewer without stats, or the
relay above its CPU budget. The answer is the largest N that held before that.

Rules: no I/O and no clocks (samples come in as numbers); a figure that could not be measured is
None, and a step with a None it needs does not hold (it is never taken for a pass).
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from streamer.bench.figures import percentile, summarise_viewers

CONTINUITY_FLOOR = 0.99
CPU_BUDGET_CORES = 1.0
MAX_STEPS = 12
MAX_VIEWERS = 200


@dataclass(frozen=True, slots=True)
class CpuSample:
    """A process's user + system CPU seconds at a wall-clock time (both in seconds)."""

    cpu_s: float
    wall_s: float


def cpu_cores(start: CpuSample | None, end: CpuSample | None) -> float | None:
    """Mean cores used between two samples (1.0 = one core busy the whole time)."""
    if start is None or end is None or end.wall_s <= start.wall_s:
        return None
    return max(0.0, end.cpu_s - start.cpu_s) / (end.wall_s - start.wall_s)


def runqueue_wait_s(schedstat_text: str) -> float | None:
    """Seconds a task waited on a run queue (runnable, not running) from /proc/PID/schedstat
    ("on-cpu-ns wait-ns timeslices"): CPU it wanted and did not get on a busy machine."""
    fields = schedstat_text.split()
    try:
        return int(fields[1]) / 1e9
    except (IndexError, ValueError):
        return None


def wait_share(start: float | None, end: float | None, wall_s: float | None) -> float | None:
    """Share of the wall time spent waiting for a CPU between two `runqueue_wait_s` readings."""
    if start is None or end is None or not wall_s or wall_s <= 0:
        return None
    return max(0.0, end - start) / wall_s


def machine_busy(stat_text: str) -> tuple[float, float] | None:
    """(busy, total) jiffies of all CPUs from /proc/stat text; None if it has no `cpu` line.

    Busy is everything but idle and iowait; two readings give the machine's load in between."""
    for line in stat_text.splitlines():
        fields = line.split()
        if fields and fields[0] == "cpu":
            try:
                values = [float(v) for v in fields[1:]]
            except ValueError:
                return None
            if len(values) < 4:
                return None
            # user nice system idle iowait irq softirq steal (guest time is inside user).
            total = sum(values[:8])
            idle = values[3] + (values[4] if len(values) > 4 else 0.0)
            return total - idle, total
    return None


def machine_busy_cores(
    start: tuple[float, float] | None, end: tuple[float, float] | None, cores: int
) -> float | None:
    """Cores of the whole machine busy between two `machine_busy` readings."""
    if start is None or end is None or end[1] <= start[1]:
        return None
    return cores * (end[0] - start[0]) / (end[1] - start[1])


def udp_rcvbuf_errors(snmp_text: str) -> int | None:
    """UDP datagrams dropped for a full receive buffer, from /proc/PID/net/snmp text (the count
    of that process's network namespace); None if the text has no such counter."""
    header: list[str] | None = None
    for line in snmp_text.splitlines():
        name, _, rest = line.partition(":")
        if name != "Udp":
            continue
        fields = rest.split()
        if header is None:
            header = fields
            continue
        try:
            return int(fields[header.index("RcvbufErrors")])
        except (ValueError, IndexError):
            return None
    return None


def parse_steps(text: str) -> tuple[int, ...]:
    """'10,20,30,40' -> (10, 20, 30, 40): strictly increasing viewer counts, bounded."""
    try:
        steps = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise ValueError(f"{text!r}: expected viewer counts separated by commas") from None
    if not steps or len(steps) > MAX_STEPS:
        raise ValueError(f"give 1 to {MAX_STEPS} steps")
    if steps[0] < 1 or steps[-1] > MAX_VIEWERS:
        raise ValueError(f"viewer counts must be within 1..{MAX_VIEWERS}")
    if any(b <= a for a, b in itertools.pairwise(steps)):
        raise ValueError(f"{text!r}: steps must increase")
    return steps


def step_figures(
    viewers: Sequence[Mapping[str, Any]],
    *,
    relay_cores: float | None,
    loadgen_cores: float | None,
    relay_out_bps: Sequence[float],
    window_s: float | None,
) -> dict[str, Any]:
    """One step's figures: the viewers' summary plus the relay's CPU and upload in the window.

    `viewers` are the viewers' stats dicts (continuity 0 for one that wrote none);
    `relay_out_bps` the relay's status-line upload rates sampled during the window."""
    figures = summarise_viewers(viewers)
    from_source = sum(int(v.get("bytes_from_source") or 0) for v in viewers)
    from_peers = sum(int(v.get("bytes_from_peers") or 0) for v in viewers)
    startups = [float(v["startup_s"]) for v in viewers if v.get("startup_s") is not None]
    figures.update(
        {
            "viewers": len(viewers),
            "viewers_without_stats": sum(1 for v in viewers if v.get("missing")),
            "bytes_from_relay": from_peers,
            "bytes_from_source": from_source,
            "startup_s_p95": percentile(startups, 0.95),
            "relay_cores": relay_cores,
            "loadgen_cores": loadgen_cores,
            "relay_out_bps": statistics.fmean(relay_out_bps) if relay_out_bps else None,
            "window_s": window_s,
        }
    )
    return figures


def step_held(
    figures: Mapping[str, Any],
    continuity_floor: float = CONTINUITY_FLOOR,
    cpu_budget_cores: float = CPU_BUDGET_CORES,
) -> tuple[bool, str]:
    """Whether a step held, and if not, why (one short phrase)."""
    if figures.get("viewers_without_stats"):
        return False, f"{figures['viewers_without_stats']} viewers wrote no stats"
    continuity = figures.get("continuity_min")
    if continuity is None:
        return False, "no continuity measured"
    if continuity < continuity_floor:
        below = figures.get("viewers_below_0_99")
        return False, f"continuity min {continuity:.3f} < {continuity_floor} ({below} viewers)"
    cores = figures.get("relay_cores")
    if cores is None:
        return False, "relay CPU not measured"
    if cores > cpu_budget_cores:
        return False, f"relay CPU {cores:.2f} cores > {cpu_budget_cores:g}"
    return True, "held"


def capacity(steps: Sequence[Mapping[str, Any]]) -> int | None:
    """The largest viewer count that held before the first step that did not (None: none held).

    Each step is a dict with `viewers` and `held`; steps are in the order they ran."""
    best: int | None = None
    for step in steps:
        if not step.get("held"):
            break
        best = int(step["viewers"])
    return best


def should_continue(steps: Sequence[Mapping[str, Any]]) -> bool:
    """Run the next step only while every step so far held."""
    return all(step.get("held") for step in steps)


def _num(value: Any, digits: int = 2, scale: float = 1.0) -> str:
    return "-" if value is None else f"{value * scale:.{digits}f}"


def _percent(share: Any) -> str:
    return "-" if share is None else f"{100 * share:.0f}%"


def _drops(drops: Any) -> str:
    """Receive-buffer drops in the window: 'relay / loadgen', or one figure when they share a
    network namespace (loopback: the host's counter, other processes' drops included)."""
    if not isinstance(drops, Mapping) or not drops:
        return "-"
    return " / ".join("-" if v is None else str(v) for v in drops.values())


def loop_lag_p99(stats: Mapping[str, Any]) -> float | None:
    """How late a peer's event loop ran (p99, ms) from its stats; None when not reported."""
    lag = stats.get("loop_lag")
    value = lag.get("p99_ms") if isinstance(lag, Mapping) else None
    return float(value) if isinstance(value, int | float) else None


def loop_lag_p99_ms(
    relay_stats: Mapping[str, Any], viewers: Sequence[Mapping[str, Any]]
) -> dict[str, float | None]:
    """How late the relay's and the load generator's event loops ran (p99, ms): a loop that
    runs late delays every message of that process, on a machine too small for the step."""
    loadgen = [v for v in (loop_lag_p99(s) for s in viewers) if v is not None]
    return {"relay": loop_lag_p99(relay_stats), "loadgen": max(loadgen) if loadgen else None}


def capacity_table(steps: Sequence[Mapping[str, Any]]) -> str:
    """One row per step (markdown, as docs/BENCHMARKS.md shows it)."""
    rows = [
        "| viewers | continuity min / mean | lag p50 / p95 | from relay | relay CPU (cores) "
        "| relay upload | relay waited for a CPU | loadgen CPU (cores) | machine busy (cores) "
        "| UDP drops | held |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for step in steps:
        relayed = step.get("bytes_from_relay") or 0
        total = relayed + (step.get("bytes_from_source") or 0)
        share = f"{100 * relayed / total:.0f}%" if total else "-"
        rows.append(
            f"| {step.get('viewers')} "
            f"| {_num(step.get('continuity_min'), 3)} / {_num(step.get('continuity_mean'), 3)} "
            f"| {_num(step.get('lag_s_p50'))} / {_num(step.get('lag_s_p95'))} s "
            f"| {share} "
            f"| {_num(step.get('relay_cores'))} "
            f"| {_num(step.get('relay_out_bps'), 1, 1e-6)} Mbit/s "
            f"| {_percent(step.get('relay_wait_share'))} "
            f"| {_num(step.get('loadgen_cores'))} "
            f"| {_num(step.get('machine_busy_cores'))} "
            f"| {_drops(step.get('udp_rcvbuf_drops'))} "
            f"| {'yes' if step.get('held') else 'no: ' + str(step.get('verdict'))} |"
        )
    return "\n".join(rows)


def verdict_line(steps: Sequence[Mapping[str, Any]], target_viewers: int = 30) -> str:
    """The answer in one line: the largest N that held, and whether that meets the target."""
    best = capacity(steps)
    if best is None:
        return "relay capacity: no step held"
    met = "meets" if best >= target_viewers else "misses"
    at_least = "at least " if should_continue(steps) else ""
    return (
        f"relay capacity: {at_least}{best} viewers at continuity >= {CONTINUITY_FLOOR} and <= "
        f"{CPU_BUDGET_CORES:g} core ({met} the target of {target_viewers})"
    )
