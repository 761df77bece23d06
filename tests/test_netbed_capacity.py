"""`streamer netbed --relay-capacity` for real: the relay and a load generator of 2 viewers in two
bed sites (the relay on a data centre's link, the viewers the profile's middle RTT away, no
loss), one short step (slow, needs root; ~40 s)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_netbed_bed import _our_namespaces, needs_bed

pytestmark = [pytest.mark.slow]


@needs_bed
@pytest.mark.timeout(180)
def test_one_relay_two_viewers_on_the_bed(tmp_path: Path) -> None:
    out = tmp_path / "capacity.json"
    argv = [
        sys.executable, "-m", "streamer", "netbed", "--relay-capacity", "--steps", "2",
        "--duration", "8", "--stagger", "0.2", "--loss", "0", "--workdir", str(tmp_path / "w"),
        "--json", str(out),
    ]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stdout, stderr = proc.communicate(timeout=170)
    assert proc.returncode == 0, stderr[-2000:]
    doc = json.loads(out.read_text())
    assert doc["delay_mode"] in ("shim", "netem")
    sites = {s["site"]: s for s in doc["sites"]}
    assert set(sites) == {"infra", "src", "relay0", "watch0"}
    # The relay runs where relays are run, on a data centre's link like the server's.
    assert sites["relay0"]["one_way_delay_ms"] == sites["infra"]["one_way_delay_ms"] == 2.5
    assert sites["relay0"]["jitter_ms"] == 0 and sites["watch0"]["jitter_ms"] > 0
    [step] = doc["steps"]
    assert step["viewers"] == 2 and step["viewers_without_stats"] == 0
    assert step["continuity_mean"] > 0.5 and step["relay_cores"] > 0.0
    assert step["bytes_from_source"] == 0 and step["bytes_from_relay"] > 2 * 300_000
    # The relay and the load generator live in two namespaces: two drop counters.
    assert set(step["udp_rcvbuf_drops"]) == {"relay", "loadgen"}
    for viewer in step["per_viewer"]:
        [path] = viewer["neighbour_paths"].values()
        assert path["rtt_ms"] > 20  # the bed's delays, not loopback
    assert "relay capacity:" in stdout
    assert _our_namespaces(proc.pid) == []
