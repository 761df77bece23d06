"""The tuned data channel on a short bed profile carries most of a shaped uplink.

benchmarks/sctp_on_bed.py with one profile (50 ms RTT, 0.5% loss, 2 Mbit/s tbf uplink), the tuned
SCTP only, 8 s. Needs root (CAP_NET_ADMIN) and the delay shim's NetfilterQueue; skipped with the
reason elsewhere. Leaves no namespace behind.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from streamer.netbed import namespaces

pytestmark = [pytest.mark.slow]
SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "sctp_on_bed.py"


def _missing() -> str | None:
    if not namespaces.has_net_admin(Path("/proc/self/status").read_text()):
        return "needs root or CAP_NET_ADMIN"
    for tool in ("ip", "tc", "nft", "iptables"):
        if namespaces.shutil.which(tool) is None:
            return f"{tool} is missing (make netbed installs it)"
    try:
        import netfilterqueue  # noqa: F401
    except ImportError:
        return "no NetfilterQueue for the delay shim (make netbed installs it)"
    return None


@pytest.mark.skipif(_missing() is not None, reason=str(_missing()))
@pytest.mark.timeout(90)
def test_tuned_data_channel_fills_most_of_a_lossy_shaped_uplink(tmp_path: Path) -> None:
    out = tmp_path / "rows.json"
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), "--profiles", "50:0.5", "--variants", "tuned", "--no-tcp",
         "--duration", "8", "--warmup", "2", "--json", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        _, stderr = proc.communicate(timeout=80)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    prefix = namespaces.prefix_for(proc.pid) + "-"
    assert not [ns for ns in namespaces.list_namespaces() if ns.startswith(prefix)]
    assert proc.returncode == 0, stderr[-2000:]
    (row,) = json.loads(out.read_text())
    assert "error" not in row, row
    assert row["rate_mbps"] > 0.4 * 2.0  # of the 2 Mbit/s uplink (measured ~1.6, TCP ~1.85)
    # Few copies on the uplink (stock aiortc: 4-27% of its DATA chunks are retransmissions).
    assert row["sctp"]["retransmitted_chunks"] < 0.08 * row["sctp"]["data_chunks"]
    assert row["latency_s"]["max"] < 5.0
