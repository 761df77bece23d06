"""The simulator against the test bed: the same figures side by side, each within a margin or not.

Pure: `streamer netbed --json` and `streamer simulate --profile netbed --json` documents in (one
bed run, one or more simulator runs, which are averaged), text and plain data out.

Margins: about twice what two runs of the bed with the same core and sites differ by (continuity
mean 0.04, lag p95 1.9 s, source 0.07x, from peers 5 points, startup 0.3 s: docs/BENCHMARKS.md,
"Real networks"), since one bed run and a few simulated runs are compared, each with its own noise;
the lowest viewer's continuity moves more (one viewer, ~40 chunks), so it gets more.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from streamer.bench.table import fmt, render
from streamer.netbed.report import share_from_peers


@dataclass(frozen=True, slots=True)
class Margin:
    label: str
    key: str
    """A key of swarm.figures."""
    within: float
    digits: int = 2
    scale: float = 1.0
    """Shown as value x scale (from peers: in points)."""


MARGINS: tuple[Margin, ...] = (
    Margin("continuity mean", "continuity_mean", 0.10, 3),
    Margin("continuity min", "continuity_min", 0.15, 3),
    Margin("startup p50 (s)", "startup_s_p50", 1.0),
    Margin("lag p50 (s)", "lag_s_p50", 2.0),
    Margin("lag p95 (s)", "lag_s_p95", 3.0),
    Margin("from peers (points)", "peer_share", 0.10, 0, 100.0),
    Margin("source upload / stream", "source_upload_ratio", 0.3),
)


def figures_of(doc: Mapping[str, Any]) -> dict[str, Any]:
    figures = doc.get("swarm", {}).get("figures")
    if not isinstance(figures, dict):
        raise ValueError("not a `netbed --json` or `simulate --profile netbed --json` document")
    return figures


def mean_figures(docs: Sequence[Mapping[str, Any]]) -> dict[str, float | None]:
    """Each margin's figure averaged over the simulator's runs (None where no run has it)."""
    out: dict[str, float | None] = {}
    for m in MARGINS:
        values = [float(v) for d in docs if (v := figures_of(d).get(m.key)) is not None]
        out[m.key] = statistics.fmean(values) if values else None
    return out


def mean_per_viewer(docs: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float | None]]:
    """Per viewer: continuity, startup, lag p50/p95 and from-peers share, averaged over runs."""
    names = list(docs[0]["swarm"]["per_viewer"]) if docs else []
    out: dict[str, dict[str, float | None]] = {}
    for name in names:
        rows = [d["swarm"]["per_viewer"].get(name, {}) for d in docs]
        figures: dict[str, float | None] = {}
        for key in ("continuity", "startup_s", "lag_s_p50", "lag_s_p95"):
            values = [float(r[key]) for r in rows if r.get(key) is not None]
            figures[key] = statistics.fmean(values) if values else None
        shares = [s for r in rows if (s := share_from_peers(r)) is not None]
        figures["peer_share"] = statistics.fmean(shares) if shares else None
        out[name] = figures
    return out


def compare(bed: Mapping[str, Any], sims: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per figure: bed, simulator, difference (sim - bed), margin, within or not."""
    bed_figures = figures_of(bed)
    sim_figures = mean_figures(sims)
    rows = []
    for m in MARGINS:
        b, s = bed_figures.get(m.key), sim_figures.get(m.key)
        diff = None if b is None or s is None else float(s) - float(b)
        rows.append(
            {
                "figure": m.label,
                "key": m.key,
                "bed": b,
                "sim": s,
                "difference": diff,
                "margin": m.within,
                "within": diff is not None and abs(diff) <= m.within + 1e-12,
            }
        )
    return rows


def comparison_table(rows: Sequence[Mapping[str, Any]]) -> str:
    by_key = {m.key: m for m in MARGINS}
    lines = []
    for r in rows:
        m = by_key[r["key"]]

        def show(value: float | None, m: Margin = m) -> str:
            return fmt(None if value is None else value * m.scale, m.digits)

        diff = r["difference"]
        lines.append(
            [
                r["figure"],
                show(r["bed"]),
                show(r["sim"]),
                "-" if diff is None else ("+" if diff >= 0 else "") + show(diff),
                f"+-{show(r['margin'])}",
                "yes" if r["within"] else "NO",
            ]
        )
    return render(["figure", "bed", "simulator", "sim - bed", "margin", "within"], lines)


def per_viewer_table(bed: Mapping[str, Any], sims: Sequence[Mapping[str, Any]]) -> str:
    bed_rows = bed["swarm"]["per_viewer"]
    sim_rows = mean_per_viewer(sims)
    lines = []
    for name, sim in sim_rows.items():
        b = bed_rows.get(name, {})

        def pair(key: str, digits: int, b: Mapping[str, Any] = b, sim: Any = sim) -> str:
            value = b.get(key)
            bed_value = fmt(float(value) if value is not None else None, digits)
            return f"{bed_value} / {fmt(sim.get(key), digits)}"

        share = share_from_peers(b)
        lines.append(
            [
                name,
                pair("continuity", 3),
                pair("startup_s", 2),
                pair("lag_s_p50", 2),
                pair("lag_s_p95", 2),
                f"{fmt(None if share is None else 100 * share, 0)} / "
                + fmt(None if sim["peer_share"] is None else 100 * sim["peer_share"], 0),
            ]
        )
    header = ["viewer (bed / sim)", "continuity", "startup s", "lag p50", "lag p95", "from peers %"]
    return render(header, lines)
