"""PNG figures with matplotlib's Agg backend (no display needed): bench timelines, sim sweeps.

Why pyplot is imported inside the functions: matplotlib takes ~0.5 s to import, and only runs
that asked for `--plot` should pay for it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from streamer.errors import UserError


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> None:
    plt = _pyplot()
    try:
        fig.savefig(path, dpi=110)
    except OSError as error:
        raise UserError(f"cannot write the plot to {path}: {error.strerror or error}") from None
    finally:
        plt.close(fig)


def _series(values: Sequence[float | None], scale: float = 1.0) -> list[float]:
    return [float("nan") if v is None else v * scale for v in values]


def plot_bench(result: Mapping[str, Any], path: Path) -> None:
    """Two panels over time: source upload rate (swarm vs client-server), per-viewer lag."""
    plt = _pyplot()
    swarm, base = result["swarm"]["timeline"], result["baseline"]["timeline"]
    fig, (up, lag) = plt.subplots(2, 1, figsize=(9, 7), sharex=True)
    up.plot(swarm["t_s"], _series(swarm["source_bps"], 1e-6), label="P2P broadcaster", lw=2)
    up.plot(base["t_s"], _series(base["source_bps"], 1e-6), label="client-server origin", lw=2)
    stream_bps = result.get("stream_rate_bps")
    if stream_bps:
        up.axhline(stream_bps / 1e6, color="grey", ls="--", lw=1, label="stream rate")
    up.set_ylim(bottom=0)
    up.set_ylabel("source upload (Mbit/s)")
    up.set_title(
        f"{result['peers']} viewers, {result['relays']} relays on 127.0.0.1 (separate processes)"
    )
    up.legend(loc="upper left")
    up.grid(alpha=0.3)
    for timeline, colour, label in (
        (swarm, "tab:blue", "P2P viewers"),
        (base, "tab:orange", "client-server viewers"),
    ):
        rows = timeline["viewer_lag_s"]
        width = max((len(r) for r in rows), default=0)
        for i in range(width):
            values = [r[i] if i < len(r) else None for r in rows]
            lag.plot(
                timeline["t_s"],
                _series(values),
                color=colour,
                alpha=0.5,
                lw=1,
                label=label if i == 0 else None,
            )
    lag.set_ylim(bottom=0)
    lag.set_ylabel("lag: release -> played (s)")
    lag.set_xlabel("time since the source started (s)")
    lag.legend(loc="upper left")
    lag.grid(alpha=0.3)
    fig.tight_layout()
    _save(fig, path)


def plot_sweep(results: Sequence[Mapping[str, Any]], path: Path) -> None:
    """Figures as the audience grows (log x): continuity, lag, source upload vs the fluid bound."""
    plt = _pyplot()
    peers = [r["peers"] for r in results]
    fig, (cont, lag, up) = plt.subplots(3, 1, figsize=(8, 9), sharex=True)
    cont.plot(peers, _series([r["continuity_mean"] for r in results]), "o-", label="mean")
    cont.plot(peers, _series([r["continuity_min"] for r in results]), "s--", label="min")
    cont.axhline(0.99, color="grey", ls=":", label="target 0.99")
    cont.set_ylabel("continuity")
    cont.legend(loc="lower left")
    lag.plot(peers, _series([r["lag_s_p50"] for r in results]), "o-", label="lag p50")
    lag.plot(peers, _series([r["lag_s_p95"] for r in results]), "s--", label="lag p95")
    lag.plot(peers, _series([r["startup_s_p50"] for r in results]), "^-", label="startup p50")
    lag.axhline(8.0, color="grey", ls=":", label="lag p95 target 8 s")
    lag.set_ylabel("seconds")
    lag.legend(loc="upper left")
    up.plot(peers, _series([r["source_upload_ratio"] for r in results]), "o-", label="source x")
    up.plot(
        peers,
        _series([r["fluid_bound_ratio"] for r in results]),
        "s--",
        label="fluid bound: max rate / stream rate",
    )
    up.axhline(1.0, color="grey", ls=":", lw=1)
    up.set_ylabel("multiple of the stream rate")
    up.set_xlabel("peers (log scale)")
    up.set_xscale("log")
    up.legend(loc="upper left")
    for ax in (cont, lag, up):
        ax.grid(alpha=0.3)
    fig.suptitle("streamer simulate: the swarm core in virtual time")
    fig.tight_layout()
    _save(fig, path)
