"""Build and tear down the bed: ip, tc and nft commands from a topology.Bed.

The command lists are pure functions (tested without root); `create`, `destroy` and
`cleanup_stale` run them. Everything the bed makes is named `PREFIX-...` with PREFIX = "snb" +
the owner's pid, so a later run can tell a stale bed (its owner is gone) and remove it.

Rules: no link to the host's own namespace, ever; drops happen only in the router's FORWARD
path or a qdisc, never in a host's OUTPUT chain (sockets would get EPERM); every namespace is
deleted on the way out, with every process still inside it killed first.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from streamer.errors import UserError
from streamer.netbed import coturn
from streamer.netbed.topology import Bed, Site

STALE_PREFIX = "snb"
NAME_RE = re.compile(rf"^({STALE_PREFIX}(\d+))-[a-z0-9-]+$")
CAP_NET_ADMIN = 12
TOOLS = ("ip", "tc", "nft")
MIN_QUEUE_PACKETS = 10
"""An uplink's queue holds at least this many full frames, however slow the uplink."""
FRAME_BYTES = 1514

Command = list[str]


class BedError(UserError):
    """A command building the bed failed."""


def prefix_for(pid: int) -> str:
    return f"{STALE_PREFIX}{pid}"


def has_net_admin(status_text: str) -> bool:
    """Whether /proc/self/status grants CAP_NET_ADMIN in the effective set."""
    for line in status_text.splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> CAP_NET_ADMIN & 1)
    return False


def check_privileges() -> None:
    """A one-line error when this process cannot build namespaces."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        status = ""
    if not has_net_admin(status):
        raise UserError("needs root or CAP_NET_ADMIN to build network namespaces (try sudo)")
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        raise UserError(f"missing {', '.join(missing)} (Debian: apt-get install iproute2 nftables)")


def _exec(ns: str, *argv: str) -> Command:
    return ["ip", "netns", "exec", ns, *argv]


def _sysctl(ns: str, key: str, value: str) -> Command:
    return _exec(ns, "sysctl", "-qw", f"{key}={value}")


def tbf(ns: str, dev: str, rate_bps: int, queue_s: float) -> Command:
    """Shape what `dev` sends to rate_bps: a queue of queue_s at that rate (at least
    MIN_QUEUE_PACKETS frames), bursts of 10 ms of traffic (at least two frames)."""
    burst_bytes = max(2 * FRAME_BYTES, rate_bps // 8 // 100)
    limit_bytes = max(MIN_QUEUE_PACKETS * FRAME_BYTES, int(rate_bps / 8 * queue_s))
    return _exec(
        ns, "tc", "qdisc", "add", "dev", dev, "root", "handle", "1:", "tbf",
        "rate", f"{rate_bps}bit", "burst", str(burst_bytes), "limit", str(limit_bytes),
    )  # fmt: skip


def netem(ns: str, dev: str, delay_s: float, jitter_s: float, loss: float, shaped: bool) -> Command:
    """Delay and loss in a qdisc (kernels with sch_netem), under the tbf when there is one."""
    where = ["parent", "1:1", "handle", "10:"] if shaped else ["root"]
    return _exec(
        ns, "tc", "qdisc", "add", "dev", dev, *where, "netem",
        "delay", f"{delay_s * 1e3:.3f}ms", f"{jitter_s * 1e3:.3f}ms",
        "loss", f"{loss * 100:.4f}%",
    )  # fmt: skip


def router_commands(bed: Bed) -> list[Command]:
    r = bed.router_ns
    return [
        ["ip", "netns", "add", r],
        ["ip", "-n", r, "link", "set", "lo", "up"],
        _sysctl(r, "net.ipv4.ip_forward", "1"),
    ]


def site_commands(bed: Bed, site: Site, use_netem: bool) -> list[Command]:
    """The site's namespace(s), its link to the router, its NAT, uplink shaper and netem."""
    r, host, wan = bed.router_ns, bed.ns(site), bed.wan_ns(site)
    wan_if = "wan" if site.nat != "none" else "eth0"
    cmds: list[Command] = [
        ["ip", "netns", "add", host],
        ["ip", "-n", host, "link", "set", "lo", "up"],
    ]
    if wan != host:
        cmds += [["ip", "netns", "add", wan], ["ip", "-n", wan, "link", "set", "lo", "up"]]
    cmds += [
        ["ip", "-n", r, "link", "add", site.router_if, "type", "veth", "peer", "name", wan_if,
         "netns", wan],
        ["ip", "-n", r, "addr", "add", f"{site.router_ip}/24", "dev", site.router_if],
        ["ip", "-n", r, "link", "set", site.router_if, "up"],
        ["ip", "-n", wan, "addr", "add", f"{site.wan_ip}/24", "dev", wan_if],
        ["ip", "-n", wan, "link", "set", wan_if, "up"],
        ["ip", "-n", wan, "route", "add", "default", "via", site.router_ip],
    ]  # fmt: skip
    if site.nat != "none":
        cmds += [
            ["ip", "-n", wan, "link", "add", "lan", "type", "veth", "peer", "name", "eth0",
             "netns", host],
            ["ip", "-n", wan, "addr", "add", f"{site.lan_gateway_ip}/24", "dev", "lan"],
            ["ip", "-n", wan, "link", "set", "lan", "up"],
            ["ip", "-n", host, "addr", "add", f"{site.host_ip}/24", "dev", "eth0"],
            ["ip", "-n", host, "link", "set", "eth0", "up"],
            ["ip", "-n", host, "route", "add", "default", "via", site.lan_gateway_ip],
            _sysctl(wan, "net.ipv4.ip_forward", "1"),
        ]  # fmt: skip
    if site.uplink_bps is not None:
        cmds.append(tbf(wan, wan_if, site.uplink_bps, site.uplink_queue_s))
    if use_netem:
        link = site.link
        shaped = site.uplink_bps is not None
        cmds.append(netem(wan, wan_if, link.delay_s, link.jitter_s, link.loss, shaped))
        cmds.append(netem(r, site.router_if, link.delay_s, link.jitter_s, link.loss, False))
    return cmds


def nat_ruleset(kind: str) -> str:
    """nftables for a home router: masquerade (port-preserving, port-restricted cone) or
    masquerade fully-random (symmetric). Unsolicited packets are dropped, on the way in to the
    LAN and to the router itself (early ICE checks must not create state that spoils a mapping).
    """
    if kind not in ("cone", "symmetric"):
        raise ValueError(f"no NAT ruleset for {kind!r}")
    masquerade = "masquerade fully-random" if kind == "symmetric" else "masquerade"
    return f"""table ip netbed_nat {{
  chain postrouting {{
    type nat hook postrouting priority srcnat; policy accept;
    oifname "wan" {masquerade}
  }}
  chain forward {{
    type filter hook forward priority filter; policy drop;
    ct state established,related accept
    iifname "lan" oifname "wan" accept
  }}
  chain input {{
    type filter hook input priority filter; policy drop;
    ct state established,related accept
    iifname "lo" accept
    iifname "lan" accept
  }}
}}
"""


def router_queue_command(bed: Bed, queue_num: int) -> Command:
    """Every forwarded packet goes to the shim (no bypass: without the shim nothing passes).

    iptables' NFQUEUE target, not nft's `queue`: kernels without nft_queue (this one) still have
    xt_NFQUEUE through iptables-nft.
    """
    return _exec(
        bed.router_ns, "iptables", "-A", "FORWARD", "-j", "NFQUEUE", "--queue-num", str(queue_num)
    )


def run(cmd: Command, stdin_text: str | None = None) -> str:
    result = subprocess.run(
        cmd, input=stdin_text, capture_output=True, text=True, timeout=30, check=False
    )
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise BedError(f"`{' '.join(cmd)}` failed: {detail[-1] if detail else result.returncode}")
    return result.stdout


def load_nft(ns: str, ruleset: str) -> None:
    run(_exec(ns, "nft", "-f", "-"), ruleset)


def probe_netem(ns: str) -> bool:
    """Whether this kernel has sch_netem (tried on the namespace's loopback, then removed)."""
    try:
        run(_exec(ns, "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"))
    except BedError:
        return False
    with contextlib.suppress(BedError):
        run(_exec(ns, "tc", "qdisc", "del", "dev", "lo", "root"))
    return True


DELAY_MODES = ("auto", "netem", "shim", "none")


def create(bed: Bed, delay_mode: str = "auto", queue_num: int = 0) -> str:
    """Build every namespace, link, NAT and shaper; returns who delays packets: "netem", "shim"
    (the caller must start it on `queue_num` in the router namespace) or "none" (no delay or
    loss at all: shapers and NATs only, to tell their effects from the links')."""
    if delay_mode not in DELAY_MODES:
        raise ValueError(f"unknown delay mode {delay_mode!r}")
    for cmd in router_commands(bed):
        run(cmd)
    if delay_mode == "auto":
        delay_mode = "netem" if probe_netem(bed.router_ns) else "shim"
    for site in bed.sites:
        for cmd in site_commands(bed, site, delay_mode == "netem"):
            run(cmd)
        if site.nat != "none":
            load_nft(bed.wan_ns(site), nat_ruleset(site.nat))
    if delay_mode == "shim":
        run(router_queue_command(bed, queue_num))
    return delay_mode


def list_namespaces() -> list[str]:
    with contextlib.suppress(BedError, OSError, subprocess.SubprocessError):
        return [line.split()[0] for line in run(["ip", "netns", "list"]).splitlines() if line]
    return []


def namespace_pids(ns: str) -> list[int]:
    with contextlib.suppress(BedError, OSError, subprocess.SubprocessError):
        return [int(p) for p in run(["ip", "netns", "pids", ns]).split() if p.isdigit()]
    return []


def kill_all(namespaces: Iterable[str], grace_s: float = 3.0) -> None:
    """SIGTERM every process inside the namespaces, SIGKILL what is left after grace_s."""
    names = list(namespaces)
    for signum, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 1.0)):
        pids = [pid for ns in names for pid in namespace_pids(ns)]
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signum)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and any(namespace_pids(ns) for ns in names):
            time.sleep(0.05)


def destroy(namespaces: Sequence[str]) -> None:
    """Kill what runs inside, then delete the namespaces (their links go with them)."""
    present = set(list_namespaces())
    names = [ns for ns in namespaces if ns in present]
    kill_all(names)
    for ns in names:
        with contextlib.suppress(BedError, OSError, subprocess.SubprocessError):
            run(["ip", "netns", "del", ns])


def stale_namespaces(names: Iterable[str], alive: Iterable[int]) -> list[str]:
    """Bed namespaces whose owner pid is not alive."""
    alive_set = set(alive)
    stale = []
    for name in names:
        match = NAME_RE.match(name)
        if match and int(match.group(2)) not in alive_set:
            stale.append(name)
    return stale


def _alive_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def cleanup_stale() -> list[str]:
    """Remove beds left by runs that died (SIGKILL, power loss), their namespaces and coturn's
    state folders; returns the namespaces removed."""
    alive = _alive_pids()
    stale = stale_namespaces(list_namespaces(), alive)
    destroy(stale)
    coturn.remove_stale_state_dirs(set(alive))
    return stale
