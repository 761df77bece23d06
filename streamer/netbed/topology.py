"""The bed as data: sites, their links, NATs and addresses. Pure: no commands, no I/O.

Every site hangs off one router namespace by its own veth link `10.99.I.0/24` (router .1, site
.2). A site behind a NAT has a second namespace in front of it (the home router) whose WAN side
holds 10.99.I.2 and whose LAN side is 192.168.I.1, the host 192.168.I.2. Nothing routes to the
host's own network: the router knows only the sites' links, and the sites' default route is the
router. A site's `link` is its access link one way (delay, jitter, loss); `uplink_bps` shapes
what it sends (None: a data-centre link, unshaped).

Rules: addresses come only from the site index, so the same description always builds the same
bed; names fit the kernel's limits (namespace names are free, interface names <= 15 bytes).
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from streamer.netbed.timing import LinkProfile

NATS = ("none", "cone", "symmetric")
ROLES = ("infra", "broadcaster", "relay", "watcher", "page")
MAX_SITES = 200
PREFIX_RE = re.compile(r"^[a-z][a-z0-9]{1,11}$")


@dataclass(frozen=True, slots=True)
class Site:
    name: str
    role: str
    index: int
    nat: str
    link: LinkProfile
    uplink_bps: int | None
    uplink_queue_s: float = 0.2
    """The uplink's queue (the home router's buffer) in seconds at uplink_bps."""

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"unknown role {self.role!r}")
        if self.nat not in NATS:
            raise ValueError(f"unknown NAT kind {self.nat!r}")
        if not 1 <= self.index <= MAX_SITES:
            raise ValueError("site index must be within 1..200")

    @property
    def router_ip(self) -> str:
        return f"10.99.{self.index}.1"

    @property
    def wan_ip(self) -> str:
        """The site's public address (its NAT's outside address when it has one)."""
        return f"10.99.{self.index}.2"

    @property
    def lan_gateway_ip(self) -> str:
        return f"192.168.{self.index}.1"

    @property
    def host_ip(self) -> str:
        """The address the site's processes have (and bind to)."""
        return f"192.168.{self.index}.2" if self.nat != "none" else self.wan_ip

    @property
    def router_if(self) -> str:
        return f"r{self.index}"


@dataclass(frozen=True)
class Bed:
    prefix: str
    sites: tuple[Site, ...]
    _by_wan_ip: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not PREFIX_RE.match(self.prefix):
            raise ValueError(f"bad bed prefix {self.prefix!r}")
        names = [s.name for s in self.sites]
        if len(set(names)) != len(names) or len({s.index for s in self.sites}) != len(names):
            raise ValueError("site names and indexes must be unique")
        self._by_wan_ip.update({s.wan_ip: s.name for s in self.sites})

    @property
    def router_ns(self) -> str:
        return f"{self.prefix}-router"

    def ns(self, site: Site) -> str:
        """The namespace the site's processes run in."""
        return f"{self.prefix}-{site.name}"

    def nat_ns(self, site: Site) -> str | None:
        return f"{self.prefix}-{site.name}-nat" if site.nat != "none" else None

    def wan_ns(self, site: Site) -> str:
        """The namespace holding the site's link to the router (and its uplink shaper)."""
        return self.nat_ns(site) or self.ns(site)

    def namespaces(self) -> list[str]:
        names = [self.router_ns]
        for site in self.sites:
            names.append(self.ns(site))
            if (nat := self.nat_ns(site)) is not None:
                names.append(nat)
        return names

    def site(self, name: str) -> Site:
        for site in self.sites:
            if site.name == name:
                return site
        raise KeyError(name)

    def by_role(self, role: str) -> list[Site]:
        return [s for s in self.sites if s.role == role]

    def site_of_ip(self, ip: str) -> str | None:
        """Which site a public (router-side) address belongs to; None for any other address."""
        return self._by_wan_ip.get(ip)

    def links(self) -> dict[str, LinkProfile]:
        return {s.name: s.link for s in self.sites}


@dataclass(frozen=True)
class Profile:
    """What the bed looks like: ranges are spread evenly over the peer sites, in shuffled order."""

    rtt_ms: tuple[float, float] = (20.0, 150.0)
    """Round trip between two peers ranges over this (each site's one way is a quarter)."""
    loss: tuple[float, float] = (0.005, 0.01)
    """Loss between two peers ranges over this (each site's access link half of it)."""
    jitter_ms: float = 3.0
    """Standard deviation of each access link's one-way delay."""
    uplinks: tuple[float, ...] = (3.0, 2.0, 1.5, 1.0, 0.5, 1.0, 2.0)
    """Peers' uplinks in multiples of the stream rate, given in turn to relays, watchers, pages."""
    source_uplink: float = 3.0
    uplink_queue_ms: float = 200.0
    """Each uplink's buffer, in time at its rate (home routers: 100 ms to well over 1 s)."""
    relays: int = 2
    watchers: int = 4
    pages: int = 2
    watcher_nats: tuple[str, ...] = ("none", "cone", "symmetric", "cone")
    page_nats: tuple[str, ...] = ("symmetric", "cone")
    infra_rtt_ms: float = 10.0
    """The server and TURN site: a data centre, low delay, no loss, unshaped."""
    seed: int = 1

    def __post_init__(self) -> None:
        lo, hi = self.rtt_ms
        if not 0 <= lo <= hi <= 5000:
            raise ValueError("RTT range must be 0 <= low <= high <= 5000 ms")
        if not 0 <= self.loss[0] <= self.loss[1] < 0.5:
            raise ValueError("loss range must be 0 <= low <= high < 50%")
        if not self.uplinks or min(self.uplinks) <= 0 or self.source_uplink <= 0:
            raise ValueError("uplinks must be positive multiples of the stream rate")
        if self.relays < 0 or self.watchers < 0 or self.pages < 0:
            raise ValueError("counts must not be negative")
        if self.relays + self.watchers + self.pages + 2 > MAX_SITES:
            raise ValueError(f"at most {MAX_SITES} sites")
        if not self.watcher_nats or not self.page_nats:
            raise ValueError("NAT patterns must not be empty")
        if not 1 <= self.uplink_queue_ms <= 10_000:
            raise ValueError("the uplink queue must be 1-10,000 ms")
        if self.jitter_ms < 0 or self.infra_rtt_ms < 0:
            raise ValueError("jitter and infra RTT must not be negative")


def spread(low: float, high: float, count: int, rng: random.Random) -> list[float]:
    """`count` values evenly spaced from low to high (both ends included), in shuffled order."""
    if count <= 0:
        return []
    if count == 1:
        return [(low + high) / 2]
    values = [low + (high - low) * i / (count - 1) for i in range(count)]
    rng.shuffle(values)
    return values


def build_bed(profile: Profile, stream_bps: float, prefix: str) -> Bed:
    """The sites for a profile: infra (server + TURN), the broadcaster, relays, watchers, pages."""
    rng = random.Random(profile.seed)
    plan: list[tuple[str, str, str]] = [("src", "broadcaster", "none")]
    plan += [(f"relay{i}", "relay", "none") for i in range(profile.relays)]
    plan += [
        (f"watch{i}", "watcher", profile.watcher_nats[i % len(profile.watcher_nats)])
        for i in range(profile.watchers)
    ]
    plan += [
        (f"page{i}", "page", profile.page_nats[i % len(profile.page_nats)])
        for i in range(profile.pages)
    ]
    delays_s = spread(profile.rtt_ms[0] / 4e3, profile.rtt_ms[1] / 4e3, len(plan), rng)
    losses = spread(profile.loss[0] / 2, profile.loss[1] / 2, len(plan), rng)
    infra = Site(
        "infra",
        "infra",
        1,
        "none",
        LinkProfile(delay_s=profile.infra_rtt_ms / 4e3),
        None,
    )
    sites = [infra]
    peer_number = 0
    for i, (name, role, nat) in enumerate(plan):
        if role == "broadcaster":
            multiple = profile.source_uplink
        else:
            multiple = profile.uplinks[peer_number % len(profile.uplinks)]
            peer_number += 1
        link = LinkProfile(
            delay_s=round(delays_s[i], 6),
            jitter_s=profile.jitter_ms / 1e3,
            loss=round(losses[i], 6),
        )
        uplink_bps = round(multiple * stream_bps)
        queue_s = profile.uplink_queue_ms / 1e3
        sites.append(Site(name, role, i + 2, nat, link, uplink_bps, queue_s))
    return Bed(prefix, tuple(sites))


def parse_range(text: str, *, percent: bool = False) -> tuple[float, float]:
    """'20-150' or '80' (ms), or with percent=True '0.5-1%' / '0.005-0.01' / '1%'."""
    raw = text.strip()
    scale = 1.0
    if raw.endswith("%"):
        if not percent:
            raise ValueError(f"{text!r}: no % here")
        raw, scale = raw[:-1], 0.01
    parts = raw.split("-")
    if len(parts) not in (1, 2) or not all(parts):
        raise ValueError(f"{text!r}: expected LOW-HIGH or one value")
    try:
        values = [float(p) * scale for p in parts]
    except ValueError:
        raise ValueError(f"{text!r}: not a number") from None
    low, high = values[0], values[-1]
    if low < 0 or high < low:
        raise ValueError(f"{text!r}: need 0 <= LOW <= HIGH")
    return low, high


def parse_multiples(text: str) -> tuple[float, ...]:
    """'3,2,1.5,1,0.5' -> (3.0, 2.0, 1.5, 1.0, 0.5): uplinks in multiples of the stream rate."""
    try:
        values = tuple(float(p) for p in text.split(","))
    except ValueError:
        raise ValueError(f"{text!r}: expected numbers separated by commas") from None
    if not values or min(values) <= 0:
        raise ValueError(f"{text!r}: multiples must be positive")
    return values


def parse_nats(text: str) -> tuple[str, ...]:
    """'none,cone,symmetric' -> a NAT pattern given in turn to the sites of one role."""
    values = tuple(p.strip() for p in text.split(","))
    bad = [v for v in values if v not in NATS]
    if bad or not values:
        raise ValueError(f"{text!r}: NAT kinds are {', '.join(NATS)}")
    return values


def describe_sites(sites: Sequence[Site]) -> list[dict[str, object]]:
    """Each site's profile as plain data (for the JSON report and the docs)."""
    return [
        {
            "site": s.name,
            "role": s.role,
            "nat": s.nat,
            "address": s.host_ip,
            "one_way_delay_ms": round(s.link.delay_s * 1e3, 2),
            "jitter_ms": round(s.link.jitter_s * 1e3, 2),
            "loss": s.link.loss,
            "uplink_bps": s.uplink_bps,
        }
        for s in sites
    ]
