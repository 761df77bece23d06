"""`streamer netbed` for real: namespaces, NATs, the delay shim, coturn, real processes, a page.

Needs root (CAP_NET_ADMIN) and the bed's tools (`make test` installs them); skipped with the
reason elsewhere. A small bed (1 relay, 2 watchers, 1 Chromium page behind the symmetric NAT)
for 15 s, then the same bed stopped with Ctrl-C half way: both leave nothing behind.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from streamer.netbed import hops, namespaces

pytestmark = [pytest.mark.slow]


def _missing() -> str | None:
    """Why the bed cannot run here, or None."""
    if not namespaces.has_net_admin(Path("/proc/self/status").read_text()):
        return "needs root or CAP_NET_ADMIN"
    for tool in ("ip", "tc", "nft", "iptables", "turnserver", "setpriv"):
        if shutil.which(tool) is None:
            return f"{tool} is missing (make test installs it)"
    try:
        import netfilterqueue  # noqa: F401
    except ImportError:
        return "no NetfilterQueue for the delay shim (make test installs it)"
    return None


needs_bed = pytest.mark.skipif(_missing() is not None, reason=str(_missing()))


def _our_namespaces(pid: int) -> list[str]:
    prefix = namespaces.prefix_for(pid) + "-"
    return [ns for ns in namespaces.list_namespaces() if ns.startswith(prefix)]


def _bed_argv(tmp_path: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "streamer", "netbed", "--duration", "15", "--relays", "1",
        "--watchers", "2", "--watcher-nats", "cone,none", "--pages", "1",
        "--page-nats", "symmetric", "--stagger", "0.5", "--workdir", str(tmp_path), *extra,
    ]  # fmt: skip


@needs_bed
@pytest.mark.timeout(150)
def test_small_bed_runs_both_halves_and_cleans_up(tmp_path: Path) -> None:
    out = tmp_path / "bed.json"
    proc = subprocess.Popen(
        _bed_argv(tmp_path, "--json", str(out), "--hop-trace"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=140)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=30)
    logs = stdout[-3000:] + stderr[-3000:]
    assert proc.returncode == 0, logs
    assert not _our_namespaces(proc.pid), logs
    result = json.loads(out.read_text())
    assert result["delay_mode"] in ("shim", "netem")
    swarm, baseline = result["swarm"], result["baseline"]
    assert set(swarm["per_viewer"]) == {"watch0", "watch1", "page0"}, logs
    assert swarm["figures"]["viewers_without_stats"] == 0, logs
    for name, stats in swarm["per_viewer"].items():
        # Every viewer played, whatever its NAT (a page behind a symmetric NAT only via TURN to
        # the cone-NAT watcher, but straight to the public sites).
        assert stats.get("chunks_played", 0) >= 5, (name, stats, logs)
    assert swarm["turn_allocations"] >= 1, logs
    assert swarm["machine_busy_cores"] > 0
    assert {"broadcast", "watch0", "watch1"} <= set(swarm["loop_lag_p99_ms"]), swarm
    assert swarm["figures"]["source_upload_ratio"] is not None
    assert all(s.get("chunks_played", 0) >= 5 for s in baseline["per_viewer"].values()), baseline
    assert baseline["figures"]["source_upload_ratio"] > 1.5  # a copy per viewer (3, staggered)
    # The delays are real: the slowest viewer's client-server startup includes several RTTs.
    delays = {s["site"]: s["one_way_delay_ms"] for s in result["sites"]}
    assert max(delays.values()) > 20
    assert "viewer" in stdout and "CS cont." in stdout and "page0" in stdout
    # --hop-trace: each part of a piece's trip measured between the CLI nodes, and shown.
    hop_times = swarm["hop_times"]
    for part in hops.PARTS:
        assert sum(f["n"] for f in hop_times[part]["by_kind"].values()) > 0, (part, hop_times)
    assert hop_times["piece_transit_s"]["by_kind"]["source"]["p50"] > 0.02  # >= a one-way delay
    assert "where a piece's time goes" in stdout


def _start_and_wait_broadcasting(tmp_path: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        _bed_argv(tmp_path, "--no-baseline"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    seen = ""
    while line := proc.stdout.readline():  # the bed's own deadlines bound this
        seen += line
        if "broadcasting" in line:
            break
    assert "broadcasting" in seen, seen
    assert _our_namespaces(proc.pid), "the bed should be up now"
    _assert_sealed(namespaces.prefix_for(proc.pid))
    return proc


def _assert_sealed(prefix: str) -> None:
    """Nothing in the bed reaches the host's network: the router knows only the sites' links,
    and no bed interface is anything but loopback or a veth to another bed namespace."""
    routes = subprocess.run(
        ["ip", "-n", f"{prefix}-router", "route"], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert routes and all(r.startswith("10.99.") for r in routes), routes
    for ns in namespaces.list_namespaces():
        if ns.startswith(prefix + "-"):
            links = subprocess.run(
                ["ip", "-n", ns, "-o", "link"], capture_output=True, text=True, check=True
            ).stdout
            for line in links.splitlines():
                name = line.split(":")[1].strip().split("@")[0]
                assert name == "lo" or " link-netns " in line or "link-netnsid" in line, line


@needs_bed
@pytest.mark.timeout(120)
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_tears_the_bed_down(tmp_path: Path, signum: int) -> None:
    proc = _start_and_wait_broadcasting(tmp_path)
    status = Path(f"/proc/{proc.pid}/status").read_text()
    masks = [line for line in status.splitlines() if line.startswith("Sig")]
    try:
        proc.send_signal(signum)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0, masks
    assert not _our_namespaces(proc.pid), namespaces.list_namespaces()


@needs_bed
@pytest.mark.timeout(120)
def test_a_killed_bed_is_removed_by_the_next_cleanup(tmp_path: Path) -> None:
    proc = _start_and_wait_broadcasting(tmp_path)
    proc.kill()  # no chance to clean up: its namespaces stay behind
    proc.wait()
    left = _our_namespaces(proc.pid)
    assert left
    coturn_state = Path(tempfile.gettempdir()).glob(f"netbed-coturn-{proc.pid}-*")
    assert list(coturn_state)
    cleanup = subprocess.run(
        [sys.executable, "-m", "streamer", "netbed", "--cleanup"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert cleanup.returncode == 0, cleanup.stderr
    assert not _our_namespaces(proc.pid)
    assert not list(Path(tempfile.gettempdir()).glob(f"netbed-coturn-{proc.pid}-*"))
    assert f"removed {len(left)} namespaces" in cleanup.stdout or "removed" in cleanup.stdout


def test_without_net_admin_one_line_error(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "streamer", "netbed", "--workdir", str(tmp_path)]
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("setpriv is missing: cannot drop root for this test")
        # Root without any capability (as a user without sudo would be).
        argv = ["setpriv", "--inh-caps=-all", "--bounding-set=-all", "--", *argv]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert lines == ["streamer netbed: error: needs root or CAP_NET_ADMIN to build network "
                     "namespaces (try sudo)"], proc.stderr  # fmt: skip
