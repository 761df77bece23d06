"""Relay capacity, the pure part: CPU from samples and /proc text, the step and stop rules, the
table; and the command lines' argument checks (fast)."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamer.bench.capacity import (
    CpuSample,
    capacity,
    capacity_table,
    cpu_cores,
    machine_busy,
    machine_busy_cores,
    parse_steps,
    runqueue_wait_s,
    should_continue,
    step_figures,
    step_held,
    udp_rcvbuf_errors,
    verdict_line,
    wait_share,
)
from streamer.bench.procs import proc_cpu_s
from streamer.cli import main

PROC_STAT = """cpu  1000 50 400 8000 100 20 30 0 0 0
cpu0 500 25 200 4000 50 10 15 0 0 0
cpu1 500 25 200 4000 50 10 15 0 0 0
intr 12345
"""


def test_cpu_cores_is_cpu_seconds_over_wall_seconds() -> None:
    assert cpu_cores(CpuSample(10.0, 100.0), CpuSample(14.5, 110.0)) == pytest.approx(0.45)
    assert cpu_cores(CpuSample(10.0, 100.0), CpuSample(30.0, 110.0)) == pytest.approx(2.0)


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (None, CpuSample(1.0, 2.0)),
        (CpuSample(1.0, 2.0), None),
        (CpuSample(1.0, 2.0), CpuSample(2.0, 2.0)),  # no wall time passed
    ],
)
def test_cpu_cores_is_none_without_two_good_samples(
    start: CpuSample | None, end: CpuSample | None
) -> None:
    assert cpu_cores(start, end) is None


def test_machine_busy_counts_all_but_idle_and_iowait() -> None:
    busy, total = machine_busy(PROC_STAT) or (0.0, 0.0)
    assert total == 1000 + 50 + 400 + 8000 + 100 + 20 + 30
    assert busy == total - 8000 - 100
    later = PROC_STAT.replace("cpu  1000 50 400 8000", "cpu  1600 50 400 8200")
    assert machine_busy_cores(machine_busy(PROC_STAT), machine_busy(later), 2) == pytest.approx(
        2 * 600 / 800
    )
    assert machine_busy("intr 1\n") is None
    assert machine_busy("cpu  1 2 x 4\n") is None
    assert machine_busy_cores(None, (1.0, 2.0), 2) is None


def test_proc_cpu_s_reads_this_process() -> None:
    import os

    cpu_s = proc_cpu_s(os.getpid())
    assert cpu_s is not None and cpu_s > 0
    assert proc_cpu_s(2**22 + 12345) is None  # no such process


@pytest.mark.parametrize(
    ("text", "steps"), [("10,20,30,40", (10, 20, 30, 40)), ("4", (4,)), (" 5, 9", (5, 9))]
)
def test_parse_steps(text: str, steps: tuple[int, ...]) -> None:
    assert parse_steps(text) == steps


@pytest.mark.parametrize("text", ["", "10,10", "20,10", "0,5", "5,201", "a,b", ",".join("1" * 13)])
def test_parse_steps_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_steps(text)


def _viewer(continuity: float, from_peers: int = 1000, from_source: int = 0) -> dict[str, object]:
    return {
        "continuity": continuity,
        "startup_s": 2.0,
        "lag_s_p50": 2.5,
        "lag_s_p95": 2.6,
        "bytes_from_peers": from_peers,
        "bytes_from_source": from_source,
    }


def test_step_figures_sum_bytes_and_average_the_relay_rate() -> None:
    figures = step_figures(
        [_viewer(1.0), _viewer(0.995, 500, 100), {"continuity": 0.0, "missing": True}],
        relay_cores=0.5,
        loadgen_cores=0.9,
        relay_out_bps=[1e6, 3e6],
        window_s=30.0,
    )
    assert figures["viewers"] == 3 and figures["viewers_without_stats"] == 1
    assert figures["bytes_from_relay"] == 1500 and figures["bytes_from_source"] == 100
    assert figures["relay_out_bps"] == pytest.approx(2e6)
    assert figures["continuity_min"] == 0.0 and figures["lag_s_p95"] == 2.6


def _figures(**changes: object) -> dict[str, object]:
    figures = step_figures(
        [_viewer(1.0), _viewer(0.99)],
        relay_cores=0.8,
        loadgen_cores=1.0,
        relay_out_bps=[],
        window_s=30.0,
    )
    figures.update(changes)
    return figures


def test_a_step_holds_at_the_floor_and_within_the_budget() -> None:
    assert step_held(_figures()) == (True, "held")
    assert step_held(_figures(relay_cores=1.0))[0]


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"continuity_min": 0.989}, "continuity min 0.989"),
        ({"continuity_min": None}, "no continuity"),
        ({"relay_cores": 1.01}, "relay CPU 1.01 cores"),
        ({"relay_cores": None}, "relay CPU not measured"),
        ({"viewers_without_stats": 2}, "2 viewers wrote no stats"),
    ],
)
def test_a_step_fails_on_continuity_cpu_or_missing_figures(
    changes: dict[str, object], why: str
) -> None:
    held, reason = step_held(_figures(**changes))
    assert not held and why in reason


def test_capacity_is_the_last_step_held_before_the_first_failure() -> None:
    steps = [
        {"viewers": 10, "held": True},
        {"viewers": 20, "held": True},
        {"viewers": 30, "held": False},
    ]
    assert capacity(steps) == 20
    assert not should_continue(steps)
    assert should_continue(steps[:2]) and should_continue([])
    assert capacity([{"viewers": 10, "held": False}]) is None
    # A later step that held after a failure does not count (runs stop at the failure anyway).
    assert capacity([*steps, {"viewers": 40, "held": True}]) == 20


def test_table_and_verdict() -> None:
    held = {**_figures(), "held": True, "verdict": "held"}
    failed = {**_figures(viewers=40, relay_cores=1.2), "held": False, "verdict": "relay CPU"}
    table = capacity_table([held, failed])
    assert table.count("\n") == 3 and "| 2 | 0.990 / 0.995 |" in table and "| 40 |" in table
    assert "| 100% |" in table and "no: relay CPU" in table
    assert "2 viewers" in verdict_line([held, failed]) and "misses" in verdict_line([held])
    assert "at least 2 viewers" in verdict_line([held])
    assert "no step held" in verdict_line([failed])
    assert "meets" in verdict_line([{**held, "viewers": 30}])


@pytest.mark.parametrize(
    "args",
    [
        ["bench", "--relay-capacity", "--steps", "20,10"],
        ["bench", "--relay-capacity", "--steps", "0"],
        ["loadgen", "--server", "http://127.0.0.1:1", "--viewers", "0"],
        ["loadgen", "--server", "http://127.0.0.1:1", "--channel", "no spaces"],
        ["loadgen", "--server", "http://127.0.0.1:1", "--duration", "0"],
    ],
)
def test_bad_arguments_are_one_line_errors(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(args) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"streamer {args[0]}: error:")


SNMP = """Ip: Forwarding DefaultTTL
Ip: 1 64
Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors
Udp: 2622377 13011 32629 2676829 32600 0 0
UdpLite: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors
UdpLite: 0 0 0 0 0 0 0
"""


def test_udp_rcvbuf_errors_from_snmp_text() -> None:
    assert udp_rcvbuf_errors(SNMP) == 32600
    assert udp_rcvbuf_errors("Ip: Forwarding\nIp: 1\n") is None
    assert udp_rcvbuf_errors("Udp: InDatagrams\nUdp: 5\n") is None


def test_table_shows_drops_per_namespace() -> None:
    shared = {**_figures(), "held": True, "udp_rcvbuf_drops": {"relay+loadgen": 7}}
    apart = {**_figures(), "held": True, "udp_rcvbuf_drops": {"relay": 0, "loadgen": 12}}
    table = capacity_table([shared, apart])
    assert "| 7 |" in table and "| 0 / 12 |" in table


def test_runqueue_wait_from_schedstat() -> None:
    assert runqueue_wait_s("123456789 2500000000 42\n") == pytest.approx(2.5)
    assert runqueue_wait_s("") is None and runqueue_wait_s("1 x 2") is None
    assert wait_share(1.0, 4.0, 10.0) == pytest.approx(0.3)
    assert wait_share(None, 4.0, 10.0) is None and wait_share(1.0, 4.0, 0.0) is None
    import os

    assert runqueue_wait_s(Path(f"/proc/{os.getpid()}/schedstat").read_text()) is not None


def test_loop_lag_of_the_relay_and_the_busiest_load_generator_viewer() -> None:
    from streamer.bench.capacity import loop_lag_p99_ms

    viewers = [{"loop_lag": {"p99_ms": 30.0}}, {"loop_lag": {"p99_ms": 80.0}}, {"missing": True}]
    assert loop_lag_p99_ms({"loop_lag": {"p99_ms": 45.0}}, viewers) == {
        "relay": 45.0,
        "loadgen": 80.0,
    }
    assert loop_lag_p99_ms({}, [{"continuity": 0.0}]) == {"relay": None, "loadgen": None}
