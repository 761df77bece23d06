"""Pure pieces of `streamer bench` / `streamer simulate`: percentiles, summaries, the fluid bound,
tables, status-line parsing, the origin's chunk window, /proc CPU accounting."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from streamer.bench.clip import clip_name
from streamer.bench.figures import fluid_bound_rate_bps, percentile, summarise_viewers, upload_ratio
from streamer.bench.origin import ChunkWindow, Released
from streamer.bench.procs import proc_cpu_s
from streamer.bench.simulate import fluid_bound_ratio, parse_sizes
from streamer.bench.statusline import last_status, parse_status
from streamer.bench.table import bench_table, fmt, render, sweep_table
from streamer.node.status import format_status
from streamer.sim import Scenario


def test_percentile_is_nearest_rank() -> None:
    values = [5.0, 1.0, 4.0, 2.0, 3.0]
    assert percentile(values, 0.5) == 3.0
    assert percentile(values, 0.95) == 5.0
    assert percentile(values, 0.0) == 1.0
    assert percentile(list(range(1, 101)), 0.95) == 95
    assert percentile([], 0.5) is None
    with pytest.raises(ValueError):
        percentile(values, 1.5)


def test_summary_counts_a_viewer_that_never_played_as_a_stall() -> None:
    stats: list[dict[str, Any]] = [
        {"continuity": 1.0, "startup_s": 0.5, "lag_s_p50": 2.0, "lag_s_p95": 2.5,
         "bytes_from_source": 100, "bytes_from_peers": 300},
        {"continuity": 0.98, "startup_s": 1.5, "lag_s_p50": 3.0, "lag_s_p95": 6.0,
         "bytes_from_source": 0, "bytes_from_peers": 400},
        {"continuity": None, "startup_s": None, "lag_s_p50": None, "lag_s_p95": None},
    ]  # fmt: skip
    s = summarise_viewers(stats)
    assert s["viewers_reporting"] == 3
    assert s["continuity_min"] == 0.0
    assert s["continuity_mean"] == pytest.approx((1.0 + 0.98) / 3)
    assert s["viewers_below_0_99"] == 2
    assert s["startup_s_p50"] == 0.5 and s["startup_s_max"] == 1.5
    assert s["lag_s_p50"] == 2.0 and s["lag_s_p95"] == 6.0
    assert s["peer_share"] == pytest.approx(700 / 800)
    assert summarise_viewers([])["continuity_min"] is None


def test_upload_ratio() -> None:
    assert upload_ratio(2000, 1000) == 2.0
    assert upload_ratio(5, 0) is None


def test_fluid_bound_is_the_smaller_of_source_and_shared_capacity() -> None:
    # Source-limited: plenty of peer upload, the source cannot send faster than its uplink.
    assert fluid_bound_rate_bps(2e6, [5e6] * 10, 10) == 2e6
    # Peer-limited: (1e6 + 10 x 0.5e6) / 10 = 0.6e6.
    assert fluid_bound_rate_bps(1e6, [0.5e6] * 10, 10) == pytest.approx(0.6e6)
    # Download-only peers add demand but no supply.
    assert fluid_bound_rate_bps(2e6, [0.0] * 4, 4) == pytest.approx(0.5e6)
    with pytest.raises(ValueError):
        fluid_bound_rate_bps(1e6, [], 0)


def test_sim_fluid_bound_ratio_follows_the_scenario() -> None:
    plain = Scenario(peers=100, peer_upload_ratio=(1.0, 1.0), download_only_share=0.0)
    assert fluid_bound_ratio(plain) == pytest.approx((2.0 + 100) / 100)
    nat = replace(plain, download_only_share=0.5)
    assert fluid_bound_ratio(nat) == pytest.approx((2.0 + 50) / 100)
    # One viewer: the source's uplink bounds it.
    assert fluid_bound_ratio(replace(plain, peers=1)) == 2.0


def test_scenario_spreads_joins_over_the_window_and_checks_its_values() -> None:
    sc = Scenario(peers=1000, duration_s=30)
    assert sc.join_stagger_s * 1000 == pytest.approx(10.0)  # a third of the duration
    assert replace(sc, relays=1000, join_window_s=4.0).join_stagger_s == pytest.approx(0.002)
    with pytest.raises(ValueError):
        Scenario(peer_upload_ratio=(2.0, 1.0))
    with pytest.raises(ValueError):
        Scenario(loss_rate=1.0)
    with pytest.raises(ValueError):
        Scenario(join_window_s=-1.0)


def test_parse_sizes() -> None:
    assert parse_sizes("10,100, 1_000,10000") == [10, 100, 1000, 10000]
    for bad in ("", "10,,20", "ten", "-5", "0"):
        with pytest.raises(ValueError):
            parse_sizes(bad)


def test_tables_align_and_show_missing_values_as_dashes() -> None:
    text = render(["a", "bb"], [["x", "1"], ["long", "22"]])
    lines = text.splitlines()
    assert lines == ["a     bb", "----  --", "x      1", "long  22"]
    with pytest.raises(ValueError):
        render(["a", "b"], [["only one"]])
    assert fmt(None) == "-" and fmt(0.98765, 3) == "0.988" and fmt(10000) == "10,000"
    table = bench_table(
        {"continuity_min": 1.0, "source_upload_ratio": 1.04}, {"source_upload_ratio": 20.0}
    )
    row = next(line for line in table.splitlines() if line.startswith("source upload"))
    assert row.split()[-4:] == ["1.04", "20.00", "<=", "2"]
    assert "continuity min" in table and " - " in table
    sweep = sweep_table([{"peers": 10, "continuity_min": 0.5}, {"peers": 10000}])
    assert sweep.splitlines()[3].lstrip().startswith("10,000")


def test_status_lines_round_trip_through_the_nodes_formatter() -> None:
    line = format_status(
        "viewer",
        {"neighbours": 5, "in_bps": 1.02e6, "out_bps": 850e3, "buffer_chunks": 3,
         "latest_seq": 12, "continuity": 0.995, "lag_s": 2.46},
    )  # fmt: skip
    status = parse_status(line)
    assert status is not None
    assert status.role == "viewer" and status.neighbours == 5
    assert status.in_bps == pytest.approx(1.02e6) and status.out_bps == pytest.approx(850e3)
    assert status.continuity == pytest.approx(0.995) and status.lag_s == pytest.approx(2.5)
    bare = parse_status(format_status("broadcaster", {"neighbours": 1, "out_bps": 2e6}))
    assert bare is not None and bare.lag_s is None and bare.out_bps == 2e6
    assert parse_status("Traceback (most recent call last):") is None
    assert parse_status("viewer  nbrs x  in 1 Mbit/s") is None


def test_last_status_picks_the_newest_line_across_tty_rewrites() -> None:
    old = format_status("relay", {"neighbours": 1, "out_bps": 1e6})
    new = format_status("relay", {"neighbours": 7, "out_bps": 3e6})
    text = f"{old}\nWARNING something\r{new}   \nINFO trailing log line\n"
    status = last_status(text)
    assert status is not None and status.neighbours == 7 and status.out_bps == 3e6
    assert last_status("nothing here\n") is None


def _chunk(seq: int, size: int = 10) -> Released:
    return Released(seq, float(seq), 1.0, 100.0 + seq, bytes(size))


def test_chunk_window_answers_gone_later_and_too_far() -> None:
    window = ChunkWindow(keep_chunks=3, max_ahead_chunks=2)
    assert window.lookup(0) == "later" and window.lookup(2) == "too_far"
    for seq in range(5):
        window.add(_chunk(seq))
    assert window.stream_bytes == 50 and window.newest_seq == 4
    assert window.lookup(1) == "gone"
    found = window.lookup(2)
    assert isinstance(found, Released) and found.seq == 2
    assert window.lookup(6) == "later" and window.lookup(7) == "too_far"
    with pytest.raises(ValueError):
        window.add(_chunk(9))  # releases are consecutive


def test_proc_cpu_s_reads_this_process() -> None:
    before = proc_cpu_s(os.getpid())
    assert before is not None
    sum(i * i for i in range(300_000))  # burn some CPU
    after = proc_cpu_s(os.getpid())
    assert after is not None and after >= before
    assert proc_cpu_s(2**22 + 12345) is None  # no such process


def test_clip_name_changes_with_the_input_and_settings(tmp_path: Path) -> None:
    media = tmp_path / "a.mp4"
    media.write_bytes(b"x")
    first = clip_name(media, 1_000_000, 1.0)
    assert first == clip_name(media, 1_000_000, 1.0)
    assert first != clip_name(media, 500_000, 1.0) != clip_name(media, 1_000_000, 0.5)
    media.write_bytes(b"xy")
    assert clip_name(media, 1_000_000, 1.0) != first
