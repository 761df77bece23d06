"""`streamer bench` end to end: real processes on loopback, then the HTTP baseline (slow), and
its argument checks (fast)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streamer.cli import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_bench_two_peers_side_by_side(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, png = tmp_path / "bench.json", tmp_path / "bench.png"
    args = ["bench", "--peers", "2", "--relays", "1", "--duration", "10", "--stagger", "0.3"]
    args += ["--json", str(out), "--plot", str(png), "--workdir", str(tmp_path / "work")]
    assert main(args) == 0
    doc = json.loads(out.read_text())
    for key in ("continuity_min", "continuity_mean", "startup_s_p50", "lag_s_p50", "lag_s_p95"):
        assert doc[key] is not None and doc[f"baseline_{key}"] is not None, key
    assert doc["swarm"]["figures"]["viewers_without_stats"] == 0
    assert 0.0 <= doc["continuity_min"] <= doc["continuity_mean"] <= 1.0
    assert doc["baseline_continuity_min"] >= 0.9  # two HTTP viewers on loopback
    assert 0.0 <= doc["startup_s_p50"] < 10.0 and 0.0 < doc["lag_s_p50"] <= doc["lag_s_p95"] < 10
    # The broadcaster sent something, bounded by its 1.9-copies rule; the origin one copy each.
    assert 0.3 <= doc["source_upload_ratio"] <= 2.0
    assert 1.5 <= doc["baseline_source_upload_ratio"] <= 3.0
    relay = doc["swarm"]["relays"][0]
    assert relay["cpu_s"] > 0 and relay["bytes_uploaded"] is not None
    assert len(doc["relay_upload_bytes"]) == 1
    assert len(doc["swarm"]["per_viewer"]) == 2 and len(doc["baseline"]["per_viewer"]) == 2
    timeline = doc["swarm"]["timeline"]
    assert len(timeline["t_s"]) >= 8 and any(v for v in timeline["source_bps"])
    assert png.read_bytes().startswith(PNG_MAGIC)
    table = capsys.readouterr().out
    assert "P2P swarm" in table and "client-server" in table
    # Every child process is gone: their logs end with their exit, no stragglers.
    logs = sorted(p.name for p in (tmp_path / "work").glob("*.log"))
    assert logs == ["broadcast.log", "relay0.log", "watch0.log", "watch1.log"]


@pytest.mark.parametrize(
    "args",
    [
        ["--peers", "0"],
        ["--relays", "-1"],
        ["--duration", "0"],
        ["--plot", "out.jpg"],
        ["--input", "/no/such/file.mp4"],
        ["--bitrate", "fast"],
    ],
)
def test_bench_bad_arguments_are_one_line_errors(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bench", *args]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("streamer bench: error:")
