"""Pure text tables: the bench's side-by-side comparison and the simulator's sweep.

Why a module: the numbers are formatted the same in the terminal and in docs/BENCHMARKS.md, and
formatting is easy to get subtly wrong (None, alignment), so it is tested on its own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def fmt(value: Any, digits: int = 2) -> str:
    """A figure for a table: '-' for missing, fixed decimals for numbers, str otherwise."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def render(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell; the first column left-aligned, others right."""
    widths = [len(h) for h in header]
    for row in rows:
        if len(row) != len(header):
            raise ValueError("every row needs one cell per column")
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]

    def line(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = [cell.rjust(w) for cell, w in zip(cells[1:], widths[1:], strict=True)]
        return "  ".join([first, *rest]).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


BENCH_ROWS: list[tuple[str, str, int, str]] = [
    # (label, key, digits, target)
    ("continuity min", "continuity_min", 3, ">= 0.99"),
    ("continuity mean", "continuity_mean", 3, ""),
    ("startup p50 (s)", "startup_s_p50", 2, "<= 2"),
    ("lag p50 (s)", "lag_s_p50", 2, "<= 3"),
    ("lag p95 (s)", "lag_s_p95", 2, "<= 5"),
    ("source upload / stream", "source_upload_ratio", 2, "<= 2"),
    ("viewer bytes from peers", "peer_share", 3, ""),
]


BED_TARGETS = {"startup_s_p50": "<= 2.5", "lag_s_p50": "", "peer_share": ">= 0.75"}
"""The test bed's own targets where they differ (home links, not loopback: docs/BENCHMARKS.md)."""
BED_ROWS = [
    (label, key, digits, BED_TARGETS.get(key, target)) for label, key, digits, target in BENCH_ROWS
]


def bench_table(
    swarm: Mapping[str, Any],
    baseline: Mapping[str, Any],
    rows_spec: Sequence[tuple[str, str, int, str]] = BENCH_ROWS,
) -> str:
    """P2P swarm next to client-server, one row per figure, with its target."""
    rows = [
        [label, fmt(swarm.get(key), digits), fmt(baseline.get(key), digits), target]
        for label, key, digits, target in rows_spec
    ]
    return render(["figure", "P2P swarm", "client-server", "target"], rows)


SWEEP_COLUMNS: list[tuple[str, str, int]] = [
    ("peers", "peers", 0),
    ("cont. min", "continuity_min", 3),
    ("cont. mean", "continuity_mean", 3),
    ("startup p50", "startup_s_p50", 2),
    ("lag p50", "lag_s_p50", 2),
    ("lag p95", "lag_s_p95", 2),
    ("stall s", "stall_s_mean", 2),
    ("source x", "source_upload_ratio", 2),
    ("fluid bound x", "fluid_bound_ratio", 2),
    ("nbrs min", "neighbours_min", 0),
    ("via exchange", "links_opened_via_exchange", 0),
    ("wall s", "wall_s", 1),
]


def sweep_table(results: Sequence[Mapping[str, Any]]) -> str:
    """One row per simulated audience size."""
    rows = [[fmt(r.get(key), digits) for _label, key, digits in SWEEP_COLUMNS] for r in results]
    return render([label for label, _key, _digits in SWEEP_COLUMNS], rows)


def command_line(name: str, options: Mapping[str, Any]) -> str:
    """The exact `streamer NAME --opt value ...` that reproduces a run (None and False left out).

    Built from the parsed options rather than sys.argv, so defaults are spelled out and the line
    is right however the command was invoked (a shell, a test, `python -m`).
    """
    import shlex

    return shlex.join(["streamer", name, *option_argv(options)])


def option_argv(options: Mapping[str, Any]) -> list[str]:
    """Parsed options back to command-line arguments (None and False left out)."""
    argv: list[str] = []
    for key, value in options.items():
        if value is None or value is False or callable(value):
            continue
        flag = "--" + key.replace("_", "-")
        argv.extend([flag] if value is True else [flag, str(value)])
    return argv
