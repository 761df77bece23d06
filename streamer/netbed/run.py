"""Run the real processes on a built bed: the swarm first, then client-server on the same links.

Swarm: coturn and `streamer serve` in the infra site, `streamer broadcast` in src, `streamer
relay` in each relay site, `streamer watch --stats-json` in each watcher site and one headless
Chromium page (streamer.netbed.page) in each page site. Client-server: the bench's HTTP origin in
the infra site and one HTTP viewer per viewer site. Every figure comes from the processes' own
stats files. The bed is destroyed on every way out (return, exception, Ctrl-C, SIGTERM).

Rules: wait on conditions (a line printed, a port bound), never a fixed sleep; every child has a
deadline; nothing listens outside the bed's namespaces.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamer.bench.capacity import loop_lag_p99, machine_busy_cores
from streamer.bench.capacity_run import read_machine_busy
from streamer.bench.figures import summarise_viewers
from streamer.bench.procs import Child, ProcessGroup
from streamer.bench.statusline import Status, last_status
from streamer.errors import UserError
from streamer.netbed import coturn, hops, namespaces, procnet
from streamer.netbed.shim import check_shim_available, config_json
from streamer.netbed.topology import Bed, Site

Progress = Callable[[str], None]
SERVER_PORT = 8080
ORIGIN_PORT = 8081
START_TIMEOUT_S = 60.0
EXIT_GRACE_S = 45.0
"""Viewers must exit this long after their --duration, or they are stopped."""
CHANNEL = "live"
UPLOAD_LIMIT_SHARE = 0.9


@dataclass(frozen=True)
class RunOptions:
    clip: Path
    workdir: Path
    duration_s: float
    stagger_s: float
    chunk_seconds: float
    baseline: bool = True
    tell_uplinks: bool = False
    """Pass each site's uplink to its node as --upload-limit (UPLOAD_LIMIT_SHARE of it)."""
    delay_mode: str = "auto"
    chromium: str = "/usr/bin/chromium"
    seed: int = 1
    hop_trace: bool = False
    """Have every CLI node write `--hop-trace` and split where a piece's time goes."""


class _StopFlag:
    """Set by the command's SIGINT/SIGTERM handler, which also raises KeyboardInterrupt. The flag
    is checked at every wait, because a KeyboardInterrupt raised while a child is being forked
    (inside an at-fork hook) is printed and swallowed by CPython, and the bed would run on."""

    requested = False


def request_stop() -> bool:
    """Ask the run to stop; True the first time only."""
    first = not _StopFlag.requested
    _StopFlag.requested = True
    return first


def _check_stop() -> None:
    if _StopFlag.requested:
        raise KeyboardInterrupt


def _until(condition: Callable[[], bool], timeout_s: float, interval_s: float = 0.05) -> bool:
    """procnet.wait_until, stopping at once when a stop was requested."""

    def checked() -> bool:
        _check_stop()
        return condition()

    return procnet.wait_until(checked, timeout_s, interval_s)


def upload_limit_args(site: Site, options: RunOptions) -> list[str]:
    """--upload-limit for a node that is told its uplink (pages cannot be: a browser has no
    such setting)."""
    if not options.tell_uplinks or site.uplink_bps is None:
        return []
    return ["--upload-limit", str(int(site.uplink_bps * UPLOAD_LIMIT_SHARE))]


def hop_trace_args(name: str, options: RunOptions) -> list[str]:
    if not options.hop_trace:
        return []
    return ["--hop-trace", str(options.workdir / f"{name}.hops")]


def viewer_sites(bed: Bed) -> list[Site]:
    return [s for s in bed.sites if s.role in ("watcher", "page")]


@dataclass(frozen=True)
class BedUp:
    """A bed whose namespaces exist, with the process group that runs in it."""

    group: ProcessGroup
    mode: str
    """Who delays and drops packets: "netem", "shim" or "none"."""
    state_dir: Path
    """coturn's state directory."""
    shim: Child | None


@contextlib.contextmanager
def bed_up(bed: Bed, options: RunOptions, progress: Progress) -> Iterator[BedUp]:
    """Build the bed's namespaces (and the shim, when it delays), yield them with a process
    group; afterwards stop every process and remove every namespace, however it ends."""
    created = bed.namespaces()
    state_dir = coturn.make_state_dir()
    try:
        mode = namespaces.create(bed, options.delay_mode)
        progress(f"netbed: {len(created)} namespaces up; delays and loss by {mode}")
        with ProcessGroup(options.workdir, kill_after_s=10.0, die_with_parent=True) as group:
            shim = None
            if mode == "shim":
                check_shim_available()
                shim = start_shim(group, bed, options)
            yield BedUp(group, mode, state_dir, shim)
    finally:
        namespaces.destroy(created)
        shutil.rmtree(state_dir, ignore_errors=True)


def run_bed(bed: Bed, options: RunOptions, progress: Progress) -> dict[str, Any]:
    """Build the bed, run both halves, destroy the bed; the figures of both halves."""
    with bed_up(bed, options, progress) as up:
        group = up.group
        swarm = _run_swarm(group, bed, options, up.state_dir, progress)
        group.stop([c for c in group.children if c is not up.shim])
        turn_log = next(c for c in group.children if c.name == "coturn").log_tail(10**8)
        swarm["turn_allocations"] = coturn.allocations(turn_log)
        baseline = _run_baseline(group, bed, options, progress) if options.baseline else None
    return {"delay_mode": up.mode, "swarm": swarm, "baseline": baseline}


def in_site(bed: Bed, site: Site) -> list[str]:
    return ["ip", "netns", "exec", bed.ns(site)]


def _wait_line(child: Child, start: str, timeout_s: float) -> str:
    stdout = child.popen.stdout
    assert stdout is not None
    deadline = time.monotonic() + timeout_s
    while (remaining := deadline - time.monotonic()) > 0:
        _check_stop()
        ready, _, _ = select.select([stdout], [], [], min(remaining, 0.2))
        _check_stop()
        if not ready:
            continue
        line = stdout.readline().decode("utf-8", "replace")
        if not line:
            break
        if line.startswith(start):
            return line.strip()
    tail = child.log_tail(400).strip().replace("\n", " | ")
    raise UserError(f"{child.name} did not start: {tail or 'no output'}")


def _wait_bound(child: Child, port: int, tcp: bool, timeout_s: float = START_TIMEOUT_S) -> None:
    ok = _until(
        lambda: child.popen.poll() is not None or procnet.is_bound(child.popen.pid, port, tcp),
        timeout_s,
    )
    if not ok or child.popen.poll() is not None:
        tail = child.log_tail(400).strip().replace("\n", " | ")
        raise UserError(f"{child.name} did not listen on port {port}: {tail or 'no output'}")


def start_shim(group: ProcessGroup, bed: Bed, options: RunOptions) -> Child:
    config = options.workdir / "shim.json"
    addresses = {s.wan_ip: s.name for s in bed.sites}
    config.write_text(config_json(0, options.seed, bed.links(), addresses))
    shim = group.spawn(
        "shim",
        str(config),
        prefix=["ip", "netns", "exec", bed.router_ns],
        module="streamer.netbed.shim",
        stdout_pipe=True,
    )
    _wait_line(shim, "ready", START_TIMEOUT_S)
    return shim


def start_infra(group: ProcessGroup, bed: Bed, options: RunOptions, state_dir: Path) -> str:
    """coturn and the signaling server; the server's base URL."""
    infra = bed.by_role("infra")[0]
    secret = coturn.new_secret()
    expiry = int(time.time() + options.duration_s * 4 + 3600)
    username, password = coturn.rest_credentials(secret, "netbed", expiry)
    turn = group.spawn_argv(
        "coturn",
        [
            *in_site(bed, infra),
            *coturn.turnserver_argv(infra.host_ip, secret, state_dir),
        ],
    )
    _wait_bound(turn, coturn.TURN_PORT, tcp=False)
    serve = group.spawn(
        "serve",
        "serve",
        "--host",
        infra.host_ip,
        "--port",
        str(SERVER_PORT),
        # A bed site's load generator runs many viewers from one address: no per-address caps.
        "--max-connections-per-ip",
        "0",
        "--max-channels-per-ip",
        "0",
        *coturn.ice_server_options(infra.host_ip, username, password),
        prefix=in_site(bed, infra),
    )
    _wait_bound(serve, SERVER_PORT, tcp=True)
    return f"http://{infra.host_ip}:{SERVER_PORT}"


def start_broadcast(group: ProcessGroup, bed: Bed, options: RunOptions, url: str) -> Child:
    """`streamer broadcast` of the clip in the broadcaster's site, once it has joined the server."""
    work = options.workdir
    src = bed.by_role("broadcaster")[0]
    cast = group.spawn(
        "broadcast",
        "broadcast",
        str(options.clip),
        "--loop",
        "--transcode",
        "never",
        "--key",
        str(work / "bed.key"),
        "--chunk-seconds",
        str(options.chunk_seconds),
        "--stats-json",
        str(work / "broadcast.json"),
        "--server",
        url,
        "--channel",
        CHANNEL,
        "--status-interval",
        "1",
        *upload_limit_args(src, options),
        *hop_trace_args("broadcast", options),
        prefix=in_site(bed, src),
        stdout_pipe=True,
    )
    _wait_line(cast, "watch: ", START_TIMEOUT_S)
    if (
        not _until(
            lambda: cast.popen.poll() is not None or "open it in a browser" in cast.log_tail(4000),
            START_TIMEOUT_S,
        )
        or cast.popen.poll() is not None
    ):
        raise UserError("the broadcaster did not join: " + cast.log_tail(400).replace("\n", " | "))
    return cast


def _run_swarm(
    group: ProcessGroup, bed: Bed, options: RunOptions, state_dir: Path, progress: Progress
) -> dict[str, Any]:
    work = options.workdir
    url = start_infra(group, bed, options, state_dir)
    common = ["--server", url, "--channel", CHANNEL, "--status-interval", "1"]
    cast = start_broadcast(group, bed, options, url)
    progress(f"netbed: server {url}, TURN on {bed.by_role('infra')[0].host_ip}, broadcasting")
    relays = [
        group.spawn(
            site.name, "relay", "--stats-json", str(work / f"{site.name}.json"), *common,
            *upload_limit_args(site, options), *hop_trace_args(site.name, options),
            prefix=in_site(bed, site),
        )
        for site in bed.by_role("relay")
    ]  # fmt: skip
    watch_url = f"{url}/watch/{CHANNEL}"
    pending = viewer_sites(bed)
    viewers: list[Child] = []
    started_s = time.monotonic()
    next_join_s = started_s + options.stagger_s  # relays first
    deadline_s = started_s + (len(pending) + 1) * options.stagger_s + options.duration_s
    deadline_s += EXIT_GRACE_S
    status: dict[str, Status] = {}
    next_note_s = started_s
    cpu_start = read_machine_busy()
    while pending or any(v.popen.poll() is None for v in viewers):
        now = time.monotonic()
        if now > deadline_s:
            progress("netbed: viewers overran their duration; stopping them")
            break
        if pending and now >= next_join_s:
            site = pending.pop(0)
            stats = str(work / f"{site.name}.json")
            if site.role == "page":
                args = [watch_url, "--duration", str(options.duration_s), "--stats-json", stats]
                args += ["--chromium", options.chromium]
                module = "streamer.netbed.page"
            else:
                args = ["watch", "--duration", str(options.duration_s), "--stats-json", stats]
                args += [*common, *upload_limit_args(site, options)]
                args += hop_trace_args(site.name, options)
                module = "streamer"
            viewers.append(group.spawn(site.name, *args, prefix=in_site(bed, site), module=module))
            next_join_s = now + options.stagger_s
        if now >= next_note_s:
            next_note_s = now + 5.0
            for child in [cast, *relays, *viewers]:
                if (got := last_status(child.read_new_log())) is not None:
                    status[child.name] = got
            source = status.get("broadcast")
            running = sum(1 for v in viewers if v.popen.poll() is None)
            progress(
                f"netbed swarm {now - started_s:4.0f}s  viewers running {running}  source out "
                + (f"{source.out_bps / 1e6:.2f} Mbit/s" if source else "-")
            )
        _check_stop()
        time.sleep(0.1)
    busy_cores = machine_busy_cores(cpu_start, read_machine_busy(), os.cpu_count() or 1)
    group.stop(viewers)
    group.stop([*relays, cast])
    swarm = _collect_swarm(bed, work)
    swarm["machine_busy_cores"] = busy_cores
    if options.hop_trace:
        swarm["hop_times"] = _hop_times(bed, work)
    return swarm


def _load(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _collect_swarm(bed: Bed, work: Path) -> dict[str, Any]:
    per_viewer: dict[str, dict[str, Any]] = {}
    for site in viewer_sites(bed):
        stats = _load(work / f"{site.name}.json")
        per_viewer[site.name] = stats if stats is not None else {"continuity": 0.0, "missing": True}
    source = _load(work / "broadcast.json") or {}
    figures = summarise_viewers(list(per_viewer.values()))
    lifetime_s = source.get("duration_s")
    stream_bytes = source.get("stream_bytes") or 0
    figures.update(
        {
            "source_upload_ratio": source.get("upload_ratio"),
            "source_bytes_uploaded": source.get("bytes_uploaded"),
            "stream_bytes": stream_bytes,
            "stream_rate_bps": 8 * stream_bytes / lifetime_s if lifetime_s else None,
            "viewers_without_stats": sum(1 for s in per_viewer.values() if s.get("missing")),
        }
    )
    relays = {}
    for site in bed.by_role("relay"):
        stats = _load(work / f"{site.name}.json") or {}
        relays[site.name] = {k: stats.get(k) for k in ("bytes_uploaded", "duration_s", "cpu_s")}
    # How late each CLI peer's event loop ran: on a machine too small for the bed, every message
    # waits that long at every hop, and the figures measure the machine as much as the network.
    loop_lag_p99_ms = {}
    for name in ["broadcast", *(s.name for s in bed.by_role("relay")), *per_viewer]:
        lag = loop_lag_p99(_load(work / f"{name}.json") or {})
        if lag is not None:
            loop_lag_p99_ms[name] = lag
    return {
        "figures": figures,
        "per_viewer": per_viewer,
        "relays": relays,
        "loop_lag_p99_ms": loop_lag_p99_ms,
    }


def _hop_times(bed: Bed, work: Path) -> dict[str, Any]:
    """Where a piece's time goes, from the CLI nodes' traces (pages write none)."""
    kind_of = {"broadcast": "source"}
    kind_of.update({s.name: "relay" for s in bed.by_role("relay")})
    kind_of.update({s.name: "viewer" for s in bed.by_role("watcher")})
    traces = {}
    for name in kind_of:
        path = work / f"{name}.hops"
        if path.exists():
            with path.open(encoding="ascii", errors="replace") as lines:
                traces[name] = hops.parse_trace(lines)
    return hops.summarise(hops.hop_samples(traces), kind_of)


def _run_baseline(
    group: ProcessGroup, bed: Bed, options: RunOptions, progress: Progress
) -> dict[str, Any]:
    work = options.workdir
    infra = bed.by_role("infra")[0]
    chunk = ["--chunk-seconds", str(options.chunk_seconds)]
    origin = group.spawn(
        "origin",
        "origin",
        str(options.clip),
        "--host",
        infra.host_ip,
        "--port",
        str(ORIGIN_PORT),
        "--stats-json",
        str(work / "origin.json"),
        *chunk,
        prefix=in_site(bed, infra),
        module="streamer.netbed.baseline",
    )
    _wait_bound(origin, ORIGIN_PORT, tcp=True)
    url = f"http://{infra.host_ip}:{ORIGIN_PORT}"
    progress(f"netbed: client-server, origin {url}, {len(viewer_sites(bed))} HTTP viewers")
    viewers: list[Child] = []
    for site in viewer_sites(bed):
        viewers.append(
            group.spawn(
                f"http-{site.name}", "viewer", url, "--duration", str(options.duration_s),
                "--stats-json", str(work / f"http-{site.name}.json"), *chunk,
                prefix=in_site(bed, site), module="streamer.netbed.baseline",
            )
        )  # fmt: skip
        _until(lambda: False, options.stagger_s)  # joins spaced as in the swarm half
    deadline_s = time.monotonic() + options.duration_s + EXIT_GRACE_S
    _until(
        lambda: all(v.popen.poll() is not None for v in viewers), deadline_s - time.monotonic(), 0.2
    )
    group.stop(viewers)
    group.stop([origin])
    per_viewer: dict[str, dict[str, Any]] = {}
    for site in viewer_sites(bed):
        stats = _load(work / f"http-{site.name}.json")
        per_viewer[site.name] = stats if stats is not None else {"continuity": 0.0, "missing": True}
    source = _load(work / "origin.json") or {}
    figures = summarise_viewers(list(per_viewer.values()))
    figures["source_upload_ratio"] = source.get("upload_ratio")
    figures["source_bytes_uploaded"] = source.get("bytes_uploaded")
    return {"figures": figures, "per_viewer": per_viewer}
