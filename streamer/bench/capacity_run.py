"""Relay capacity, measured: one `streamer relay` process and N viewers of it, N stepped up.

Per step: a fresh relay (room for N + 4 neighbours), then one `streamer loadgen` process with N
viewers that fetch from that relay alone (streamer.bench.loadgen). The measuring window runs
from the loadgen's `joined N` line to its `leaving` line; the relay's and the loadgen's CPU over
the window come from /proc/PID/stat, the relay's upload from its status lines, each viewer's
continuity and lag from the loadgen's stats file. Serve and the broadcaster run across steps.
Steps go on while the previous held (streamer.bench.capacity.step_held).

Where the processes run is a `Placement` (argv prefixes): nothing on loopback, `ip netns exec
NS` on the test bed (streamer.netbed.capacity).

Rules: every wait has a deadline; every child is stopped when its step (or the run) ends.
"""

from __future__ import annotations

import os
import select
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamer.bench.capacity import (
    CpuSample,
    cpu_cores,
    loop_lag_p99_ms,
    machine_busy,
    machine_busy_cores,
    runqueue_wait_s,
    should_continue,
    step_figures,
    step_held,
    udp_rcvbuf_errors,
    wait_share,
)
from streamer.bench.procs import Child, ProcessGroup, proc_cpu_s
from streamer.bench.statusline import parse_status
from streamer.bench.swarm_run import load_json_object
from streamer.errors import UserError

Progress = Callable[[str], None]
START_TIMEOUT_S = 60.0
RELAY_JOIN_TIMEOUT_S = 30.0
EXIT_TIMEOUT_S = 60.0
EXTRA_NEIGHBOURS = 4
CHANNEL = "live"


@dataclass(frozen=True)
class CapacityOptions:
    steps: tuple[int, ...]
    duration_s: float = 30.0
    """The measuring window of each step (after the last viewer joined)."""
    stagger_s: float = 0.3
    with_source: bool = False
    keep_going: bool = False
    """Run every step even after one did not hold (the capacity is still the last N held
    before the first failure; the later rows show how the failure grows)."""


@dataclass(frozen=True)
class Placement:
    """Where the relay and the load generator run, and the server they use."""

    server_url: str
    relay_prefix: tuple[str, ...] = ()
    loadgen_prefix: tuple[str, ...] = ()


class LineReader:
    """Lines from a child's stdout pipe without blocking (select + os.read, own buffer)."""

    def __init__(self, child: Child) -> None:
        stdout = child.popen.stdout
        assert stdout is not None
        self._fd = stdout.fileno()
        self._buffer = b""
        self.closed = False

    def poll(self, timeout_s: float) -> list[str]:
        """Complete lines that arrived within timeout_s (none on timeout)."""
        if self.closed:
            time.sleep(timeout_s)
            return []
        ready, _, _ = select.select([self._fd], [], [], timeout_s)
        if ready:
            data = os.read(self._fd, 65536)
            if not data:
                self.closed = True
            self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        return [line.decode("utf-8", "replace").strip() for line in lines]


def wait_line(
    child: Child,
    reader: LineReader,
    start: str,
    timeout_s: float,
    tick: Callable[[], None] = lambda: None,
) -> str:
    """The first stdout line starting with `start`; UserError if the child exits or times out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for line in reader.poll(0.5):
            if line.startswith(start):
                return line
        tick()
        if reader.closed and child.popen.poll() is not None:
            break
    tail = child.log_tail(600).strip().replace("\n", " | ")
    raise UserError(f"{child.name}: no '{start}' line: {tail or 'no output'}")


def _wait_relay_linked(relay: Child, timeout_s: float) -> None:
    """Until the relay's status line shows a neighbour (the broadcaster)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for line in relay.read_new_log().splitlines():
            status = parse_status(line)
            if status is not None and status.neighbours >= 1:
                return
        if relay.popen.poll() is not None:
            break
        time.sleep(0.2)
    raise UserError("the relay did not link to the broadcaster: " + relay.log_tail(400))


def read_machine_busy() -> tuple[float, float] | None:
    """(busy, total) jiffies of the whole machine now (capacity.machine_busy); None if unread."""
    try:
        return machine_busy(Path("/proc/stat").read_text())
    except OSError:
        return None


def _sample(child: Child) -> CpuSample | None:
    cpu_s = proc_cpu_s(child.popen.pid)
    return None if cpu_s is None else CpuSample(cpu_s, time.monotonic())


def _rcvbuf_errors(child: Child) -> int | None:
    """The UDP receive-buffer drops counted in the child's network namespace so far."""
    try:
        return udp_rcvbuf_errors(Path(f"/proc/{child.popen.pid}/net/snmp").read_text())
    except OSError:
        return None


def _waited_s(child: Child) -> float | None:
    """Run-queue wait of the child's main thread (its event loop) so far."""
    try:
        return runqueue_wait_s(Path(f"/proc/{child.popen.pid}/schedstat").read_text())
    except OSError:
        return None


def _netns(child: Child) -> str | None:
    try:
        return os.readlink(f"/proc/{child.popen.pid}/ns/net")
    except OSError:
        return None


def _delta(start: int | None, end: int | None) -> int | None:
    return None if start is None or end is None else end - start


def run_step(
    group: ProcessGroup,
    placement: Placement,
    options: CapacityOptions,
    viewers: int,
    others: Sequence[Child],
    progress: Progress,
) -> dict[str, Any]:
    """One step: a fresh relay, N viewers of it; its figures (the relay stopped after)."""
    work = group.workdir
    tag = f"n{viewers}"
    relay = group.spawn(
        f"relay-{tag}", "relay", "--server", placement.server_url, "--channel", CHANNEL,
        "--max-neighbours", str(viewers + EXTRA_NEIGHBOURS), "--status-interval", "1",
        "--stats-json", str(work / f"relay-{tag}.json"),
        prefix=placement.relay_prefix,
    )  # fmt: skip
    try:
        _wait_relay_linked(relay, RELAY_JOIN_TIMEOUT_S)
        stats_path = work / f"loadgen-{tag}.json"
        loadgen = group.spawn(
            f"loadgen-{tag}", "loadgen", "--server", placement.server_url, "--channel", CHANNEL,
            "--viewers", str(viewers), "--duration", str(options.duration_s),
            "--stagger", str(options.stagger_s), "--stats-json", str(stats_path),
            *(["--with-source"] if options.with_source else []),
            prefix=placement.loadgen_prefix, stdout_pipe=True,
        )  # fmt: skip
        reader = LineReader(loadgen)
        join_s = viewers * (options.stagger_s + 1.0) + START_TIMEOUT_S
        wait_line(loadgen, reader, "joined", join_s)
        progress(f"capacity {tag}: {viewers} viewers joined; measuring {options.duration_s:g} s")
        start = {c.name: _sample(c) for c in (relay, loadgen, *others)}
        machine_start = read_machine_busy()
        drops_start = {c.name: _rcvbuf_errors(c) for c in (relay, loadgen)}
        namespaces_shared = _netns(relay) == _netns(loadgen)
        waits_start = {c.name: _waited_s(c) for c in (relay, loadgen)}
        relay.read_new_log()
        out_bps: list[float] = []

        def tick() -> None:
            for line in relay.read_new_log().splitlines():
                status = parse_status(line)
                if status is not None:
                    out_bps.append(status.out_bps)

        wait_line(loadgen, reader, "leaving", options.duration_s + START_TIMEOUT_S, tick)
        tick()
        end = {c.name: _sample(c) for c in (relay, loadgen, *others)}
        machine_end = read_machine_busy()
        drops_end = {c.name: _rcvbuf_errors(c) for c in (relay, loadgen)}
        waits_end = {c.name: _waited_s(c) for c in (relay, loadgen)}
        try:
            loadgen.popen.wait(timeout=EXIT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            progress(f"capacity {tag}: the load generator did not exit; stopping it")
        group.stop([loadgen])
    finally:
        group.stop([relay])
    load = load_json_object(stats_path) or {}
    per_viewer = load.get("viewers") or [{"continuity": 0.0, "missing": True}] * viewers
    cores = {name: cpu_cores(start[name], end[name]) for name in start}
    window = start[relay.name], end[relay.name]
    figures = step_figures(
        per_viewer,
        relay_cores=cores[relay.name],
        loadgen_cores=cores[loadgen.name],
        relay_out_bps=out_bps,
        window_s=window[1].wall_s - window[0].wall_s if window[0] and window[1] else None,
    )
    for role, child in (("relay", relay), ("loadgen", loadgen)):
        figures[f"{role}_wait_share"] = wait_share(
            waits_start[child.name], waits_end[child.name], figures["window_s"]
        )
    figures["other_cores"] = {c.name: cores[c.name] for c in others}
    figures["machine_busy_cores"] = machine_busy_cores(
        machine_start, machine_end, os.cpu_count() or 1
    )
    drops = {
        role: _delta(drops_start[c.name], drops_end[c.name])
        for role, c in (("relay", relay), ("loadgen", loadgen))
    }
    if namespaces_shared:  # one counter for both: say it once
        drops = {"relay+loadgen": drops["relay"]}
    figures["udp_rcvbuf_drops"] = drops
    relay_stats = load_json_object(work / f"relay-{tag}.json") or {}
    figures["relay_bytes_uploaded"] = relay_stats.get("bytes_uploaded")
    figures["relay_peers_served"] = relay_stats.get("peers_served")
    figures["loop_lag_p99_ms"] = loop_lag_p99_ms(relay_stats, per_viewer)
    figures["loadgen_failed_joins"] = load.get("failed_joins")
    held, why = step_held(figures)
    figures.update({"held": held, "verdict": why, "per_viewer": per_viewer})
    return figures


def run_steps(
    group: ProcessGroup,
    placement: Placement,
    options: CapacityOptions,
    others: Sequence[Child],
    progress: Progress,
) -> list[dict[str, Any]]:
    """Every step in turn while the previous ones held."""
    steps: list[dict[str, Any]] = []
    for viewers in options.steps:
        if not options.keep_going and not should_continue(steps):
            break
        progress(f"capacity: step with {viewers} viewers")
        step = run_step(group, placement, options, viewers, others, progress)
        steps.append(step)
        progress(f"capacity: {viewers} viewers: {step['verdict']}")
    return steps


def start_loopback(
    group: ProcessGroup, clip: Path, chunk_seconds: float
) -> tuple[str, list[Child]]:
    """`streamer serve` and `streamer broadcast` on 127.0.0.1: the server URL and both children."""
    serve = group.spawn("serve", "serve", "--host", "127.0.0.1", "--port", "0", stdout_pipe=True)
    line = wait_line(serve, LineReader(serve), "signaling server listening on", START_TIMEOUT_S)
    url = line.rsplit(" ", 1)[-1].rstrip("/")
    cast = group.spawn(
        "broadcast", "broadcast", str(clip), "--server", url, "--channel", CHANNEL, "--loop",
        "--transcode", "never", "--key", str(group.workdir / "capacity.key"),
        "--chunk-seconds", str(chunk_seconds), "--status-interval", "1",
        "--stats-json", str(group.workdir / "broadcast.json"),
        stdout_pipe=True,
    )  # fmt: skip
    wait_line(cast, LineReader(cast), "watch: ", START_TIMEOUT_S)
    return url, [serve, cast]


def run_loopback(
    clip: Path, workdir: Path, options: CapacityOptions, chunk_seconds: float, progress: Progress
) -> list[dict[str, Any]]:
    """Every step on 127.0.0.1 (serve, broadcast, relay and loadgen each their own process)."""
    with ProcessGroup(workdir) as group:
        url, others = start_loopback(group, clip, chunk_seconds)
        progress(f"capacity: server {url}, broadcasting")
        return run_steps(group, Placement(server_url=url), options, others, progress)
