"""`streamer bench --relay-capacity` for real: serve, broadcast, one relay and a `streamer
loadgen` of 4 viewers, each its own process on 127.0.0.1 (slow, ~40 s)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streamer.cli import main


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_four_viewers_of_one_relay(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, work = tmp_path / "capacity.json", tmp_path / "work"
    args = ["bench", "--relay-capacity", "--steps", "4", "--duration", "8", "--stagger", "0.2"]
    assert main([*args, "--json", str(out), "--workdir", str(work)]) == 0
    doc = json.loads(out.read_text())
    [step] = doc["steps"]
    assert step["viewers"] == 4 and step["viewers_without_stats"] == 0
    assert step["loadgen_failed_joins"] == []
    # Real figures: every viewer played near the live edge on an idle-ish loopback.
    assert 0.9 <= step["continuity_min"] <= step["continuity_mean"] <= 1.0
    assert 0.0 < step["lag_s_p50"] <= step["lag_s_p95"] < 10.0
    # The relay's CPU was measured over the window, and it uploaded ~4 streams.
    assert 0.0 < step["relay_cores"] < 2.0 and 0.0 < step["loadgen_cores"] < 2.0
    assert step["window_s"] >= 7.0 and 0.0 <= step["relay_wait_share"] < 1.0
    assert step["relay_out_bps"] is not None and step["relay_out_bps"] > 1e6
    assert step["relay_peers_served"] == 4
    # Every viewer's bytes came from the relay: none from the source, its only neighbour the relay.
    relay_id = json.loads((work / "relay-n4.json").read_text())["peer_id"]
    assert step["bytes_from_source"] == 0 and step["bytes_from_relay"] > 4 * 300_000
    for viewer in step["per_viewer"]:
        assert viewer["bytes_from_peers"] > 300_000 and viewer["bytes_from_source"] == 0
        assert set(viewer["neighbour_paths"]) == {relay_id}
    assert doc["capacity_viewers"] == (4 if step["held"] else None)
    report = capsys.readouterr().out
    assert "| 4 |" in report and "relay capacity:" in report
    logs = sorted(p.name for p in work.glob("*.log"))
    assert logs == ["broadcast.log", "loadgen-n4.log", "relay-n4.log", "serve.log"]
