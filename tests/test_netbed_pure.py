"""The test bed's pure parts: the shim's timing, the topology, the commands, credentials, tables."""

from __future__ import annotations

import random

import pytest

from streamer.netbed import coturn, namespaces, procnet
from streamer.netbed.capacity import capacity_profile, place_relay
from streamer.netbed.report import sites_table, viewers_table
from streamer.netbed.shim import config_json, ipv4_addresses
from streamer.netbed.timing import LinkProfile, ReleaseClock, path_loss, path_rtt_s
from streamer.netbed.topology import (
    Bed,
    Profile,
    Site,
    build_bed,
    describe_sites,
    parse_multiples,
    parse_nats,
    parse_range,
    spread,
)

A = LinkProfile(delay_s=0.010)
B = LinkProfile(delay_s=0.030)


def test_release_is_arrival_plus_both_sites_delays() -> None:
    clock = ReleaseClock({"a": A, "b": B})
    assert clock.release_s("a", "b", 100.0) == pytest.approx(100.04)
    assert clock.release_s("b", "a", 100.0) == pytest.approx(100.04)
    assert path_rtt_s(A, B) == pytest.approx(0.08)


def test_unknown_sites_add_nothing() -> None:
    clock = ReleaseClock({"a": A})
    assert clock.release_s(None, None, 5.0) == 5.0
    assert clock.release_s("a", "elsewhere", 5.0) == pytest.approx(5.01)


def test_same_seed_same_draws_and_different_seed_different() -> None:
    links = {"a": LinkProfile(0.02, 0.005, 0.05), "b": LinkProfile(0.01, 0.002, 0.05)}

    def run(seed: int) -> list[float | None]:
        clock = ReleaseClock(links, random.Random(seed))
        return [clock.release_s("a", "b", i * 0.01) for i in range(500)]

    assert run(7) == run(7)
    assert run(7) != run(8)


def test_loss_rate_matches_both_links() -> None:
    a, b = LinkProfile(loss=0.01), LinkProfile(loss=0.005)
    clock = ReleaseClock({"a": a, "b": b}, random.Random(3))
    n = 40_000
    lost = sum(clock.release_s("a", "b", i * 1e-3) is None for i in range(n))
    assert lost == clock.dropped
    assert lost / n == pytest.approx(path_loss(a, b), rel=0.15)
    assert path_loss(a, b) == pytest.approx(1 - 0.99 * 0.995)


def test_jitter_never_reorders_one_direction_nor_goes_early() -> None:
    jittery = LinkProfile(delay_s=0.02, jitter_s=0.02)  # jitter as large as the delay
    clock = ReleaseClock({"a": jittery, "b": jittery}, random.Random(5))
    releases = []
    for i in range(2000):
        arrival = i * 0.001
        release = clock.release_s("a", "b", arrival)
        assert release is not None and release >= arrival
        releases.append(release)
    assert releases == sorted(releases)
    delays = [r - i * 0.001 for i, r in enumerate(releases)]
    assert max(delays) - min(delays) > 0.03  # the jitter is really there


def test_directions_are_independent_queues() -> None:
    slow, fast = LinkProfile(delay_s=0.5), LinkProfile(delay_s=0.0)
    clock = ReleaseClock({"slow": slow, "fast": fast, "other": fast})
    assert clock.release_s("slow", "fast", 0.0) == pytest.approx(0.5)
    # Another direction is not held behind the slow one.
    assert clock.release_s("fast", "other", 0.1) == pytest.approx(0.1)


def test_link_profile_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        LinkProfile(delay_s=-1)
    with pytest.raises(ValueError):
        LinkProfile(loss=1.0)


def test_ipv4_addresses_from_a_header() -> None:
    header = bytes([0x45, 0, 0, 20]) + bytes(8) + bytes([10, 99, 2, 2, 10, 99, 3, 2])
    assert ipv4_addresses(header) == ("10.99.2.2", "10.99.3.2")
    assert ipv4_addresses(b"\x60" + bytes(39)) is None  # IPv6
    assert ipv4_addresses(b"\x45\x00") is None


def test_shim_config_round_trips() -> None:
    text = config_json(0, 4, {"a": LinkProfile(0.01, 0.002, 0.003)}, {"10.99.2.2": "a"})
    assert '"delay_s": 0.01' in text and '"10.99.2.2": "a"' in text


def test_parse_options() -> None:
    assert parse_range("20-150") == (20.0, 150.0)
    assert parse_range("80") == (80.0, 80.0)
    assert parse_range("0.5-1%", percent=True) == pytest.approx((0.005, 0.01))
    assert parse_range("0.005-0.01", percent=True) == (0.005, 0.01)
    for bad in ("150-20", "x", "-5", "1-2-3", "1%"):
        with pytest.raises(ValueError):
            parse_range(bad)
    assert parse_multiples("3,0.5") == (3.0, 0.5)
    with pytest.raises(ValueError):
        parse_multiples("1,0")
    assert parse_nats("none,cone,symmetric") == ("none", "cone", "symmetric")
    with pytest.raises(ValueError):
        parse_nats("full-cone")


def test_spread_covers_the_range_in_shuffled_order() -> None:
    values = spread(5.0, 35.0, 7, random.Random(1))
    assert sorted(values) == pytest.approx([5, 10, 15, 20, 25, 30, 35])
    assert spread(1.0, 3.0, 1, random.Random(1)) == [2.0]
    assert spread(1.0, 3.0, 0, random.Random(1)) == []


def test_default_bed_is_the_issue_profile() -> None:
    bed = build_bed(Profile(), stream_bps=1_000_000, prefix="snb42")
    names = [s.name for s in bed.sites]
    assert names[:2] == ["infra", "src"]
    assert len(bed.by_role("relay")) == 2 and len(bed.by_role("watcher")) == 4
    assert [s.nat for s in bed.by_role("page")] == ["symmetric", "cone"]
    assert {s.nat for s in bed.sites} == {"none", "cone", "symmetric"}
    peers = [s for s in bed.sites if s.role != "infra"]
    rtts = [path_rtt_s(a.link, b.link) for a in peers for b in peers if a is not b]
    assert min(rtts) >= 0.020 and max(rtts) <= 0.150
    losses = [path_loss(a.link, b.link) for a in peers for b in peers if a is not b]
    assert min(losses) >= 0.005 * 0.99 and max(losses) <= 0.0101
    assert bed.site("src").uplink_bps == 3_000_000
    ups = [s.uplink_bps for s in peers if s.role != "broadcaster"]
    assert all(u is not None and 500_000 <= u <= 3_000_000 for u in ups)
    assert bed.site("infra").uplink_bps is None and bed.site("infra").link.loss == 0


def test_the_capacity_bed_s_relay_is_on_a_data_centre_link_unless_asked_otherwise() -> None:
    profile = capacity_profile(Profile())
    drawn = build_bed(profile, 1e6, "snb6")
    assert place_relay(drawn, profile, "home") == drawn
    bed = place_relay(drawn, profile)
    relay, viewers = bed.site("relay0"), bed.site("watch0")
    assert relay.link == bed.site("infra").link and relay.uplink_bps == 100_000_000
    # Every viewer is the profile's middle RTT (20-150 ms) and loss (0.5-1%) from the relay.
    assert path_rtt_s(relay.link, viewers.link) == pytest.approx(0.085)
    assert path_loss(relay.link, viewers.link) == pytest.approx(0.0075)
    assert viewers.uplink_bps == drawn.site("watch0").uplink_bps
    assert bed.site("src") == drawn.site("src") and bed.site_of_ip("10.99.3.2") == "relay0"
    with pytest.raises(ValueError, match="relay link"):
        place_relay(drawn, profile, "fibre")


def test_addresses_and_names() -> None:
    bed = build_bed(Profile(watchers=2, pages=1), 1e6, "snb7")
    cone = next(s for s in bed.sites if s.nat == "cone")
    public = bed.site("src")
    assert public.host_ip == public.wan_ip == f"10.99.{public.index}.2"
    assert cone.host_ip.startswith("192.168.") and cone.wan_ip.startswith("10.99.")
    assert bed.site_of_ip(cone.wan_ip) == cone.name and bed.site_of_ip(cone.host_ip) is None
    assert bed.nat_ns(public) is None and bed.nat_ns(cone) == f"snb7-{cone.name}-nat"
    assert bed.wan_ns(cone) == bed.nat_ns(cone)
    ns = bed.namespaces()
    assert ns[0] == "snb7-router" and len(ns) == len(set(ns))
    assert all(n.startswith("snb7-") for n in ns)
    assert describe_sites(bed.sites)[1]["one_way_delay_ms"] > 0


def test_bed_rejects_duplicates_and_bad_prefix() -> None:
    site = Site("a", "watcher", 2, "none", LinkProfile(), None)
    with pytest.raises(ValueError):
        Bed("snb1", (site, site))
    with pytest.raises(ValueError):
        Bed("Bad-Prefix", (site,))


def _flat(cmds: list[list[str]]) -> list[str]:
    return [" ".join(c) for c in cmds]


def test_site_commands_never_touch_the_host_namespace() -> None:
    bed = build_bed(Profile(watchers=3, pages=0, relays=0), 1e6, "snb9")
    for site in bed.sites:
        for cmd in site_cmds(bed, site):
            # Every command names one of the bed's namespaces (ip -n NS / ip netns exec NS /
            # ip netns add NS) or moves an interface into one.
            assert any(ns in cmd for ns in bed.namespaces()), cmd


def site_cmds(bed: Bed, site: Site, netem: bool = False) -> list[str]:
    return _flat(namespaces.site_commands(bed, site, netem))


def test_nat_site_has_a_home_router_and_a_shaped_uplink() -> None:
    bed = build_bed(Profile(watchers=2, pages=0, relays=0, watcher_nats=("symmetric",)), 1e6, "x1")
    site = bed.by_role("watcher")[0]
    cmds = site_cmds(bed, site)
    nat = bed.nat_ns(site)
    assert f"ip netns add {nat}" in cmds
    assert f"ip -n {nat} addr add {site.wan_ip}/24 dev wan" in cmds
    assert f"ip -n {bed.ns(site)} route add default via {site.lan_gateway_ip}" in cmds
    tbf = [c for c in cmds if " tbf " in c]
    assert len(tbf) == 1 and f"exec {nat} tc qdisc add dev wan root" in tbf[0]
    assert f"rate {site.uplink_bps}bit" in tbf[0]
    assert not any("netem" in c for c in cmds)
    with_netem = site_cmds(bed, site, netem=True)
    assert any("parent 1:1" in c and "netem" in c for c in with_netem)  # under the tbf
    assert any(f"exec {bed.router_ns} tc qdisc add dev {site.router_if} root netem" in c
               for c in with_netem)  # fmt: skip


def test_nat_rulesets() -> None:
    assert "masquerade fully-random" in namespaces.nat_ruleset("symmetric")
    cone = namespaces.nat_ruleset("cone")
    assert "masquerade\n" in cone and "fully-random" not in cone
    assert cone.count("policy drop") == 2  # forward and input
    with pytest.raises(ValueError):
        namespaces.nat_ruleset("none")


def test_router_queue_is_in_the_router_forward_chain() -> None:
    bed = build_bed(Profile(watchers=1, pages=0, relays=0), 1e6, "snb3")
    cmd = " ".join(namespaces.router_queue_command(bed, 0))
    assert cmd == "ip netns exec snb3-router iptables -A FORWARD -j NFQUEUE --queue-num 0"


def test_capability_and_stale_detection() -> None:
    assert namespaces.has_net_admin("Name:\tx\nCapEff:\t000001ffffffffff\n")
    assert not namespaces.has_net_admin("CapEff:\t0000000000000000\n")
    assert not namespaces.has_net_admin("")
    names = ["snb100-router", "snb100-watch0-nat", "snb200-router", "other", "snbx-router"]
    assert namespaces.stale_namespaces(names, alive=[200]) == ["snb100-router", "snb100-watch0-nat"]
    assert namespaces.prefix_for(123) == "snb123"
    dirs = ["netbed-coturn-100-ab12", "netbed-coturn-200-cd34", "netbed-coturn-x1y2", "netbed-7"]
    assert coturn.stale_state_dirs(dirs, alive={200}) == ["netbed-coturn-100-ab12"]


def test_turn_rest_credentials() -> None:
    username, password = coturn.rest_credentials("S", "netbed", 1_700_000_000)
    assert username == "1700000000:netbed"
    assert password == "weUokgGvdTre+9OuXF/vMQDfQho="  # base64(HMAC-SHA1("S", username))
    argv = coturn.turnserver_argv("10.99.1.2", "S", state_dir=__import__("pathlib").Path("/t"))
    assert argv[:2] == ["setpriv", "--reuid=nobody"]
    assert "--use-auth-secret" in argv and "--static-auth-secret=S" in argv
    assert argv[argv.index("--listening-ip") + 1] == "10.99.1.2"
    opts = coturn.ice_server_options("10.99.1.2", "u", "p")
    assert "stun:10.99.1.2:3478" in opts and "turn:10.99.1.2:3478?transport=udp" in opts
    log = "x: session 1: ALLOCATE processed, success\ny\nz: ALLOCATE processed, success\n"
    assert coturn.allocations(log) == 2


def test_bound_ports_from_proc_tables() -> None:
    tcp = (
        "  sl  local_address rem_address   st\n"
        "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000\n"
        "   1: 0100007F:1F91 0100007F:D431 01 00000000:00000000\n"
    )
    assert procnet.bound_ports(tcp, tcp=True) == {8080}
    udp = "  sl  local_address\n 1196: 0201630A:0D96 00000000:0000 07 0\n"
    assert procnet.bound_ports(udp, tcp=False) == {3478}
    assert procnet.wait_until(lambda: True, 0.0)
    assert not procnet.wait_until(lambda: False, 0.01, 0.005)


def test_tables() -> None:
    bed = build_bed(Profile(watchers=1, pages=1, relays=0), 1e6, "snb5")
    sites = describe_sites(bed.sites)
    text = sites_table(sites, 1e6)
    assert "symmetric" in text and "3.0x" in text
    swarm = {"watch0": {"continuity": 1, "startup_s": 2.0, "bytes_from_peers": 3,
                        "bytes_from_source": 1}}  # fmt: skip
    table = viewers_table(sites, swarm, {"watch0": {"continuity": 0.5}}, 10.0)
    row = table.splitlines()[2]
    assert row.startswith("watch0") and "1.000" in row and "0.75" in row and "0.500" in row
    assert "page0" not in table  # no stats, no row


def test_uplink_queue_is_time_at_rate_with_a_floor() -> None:
    fast = " ".join(namespaces.tbf("ns", "wan", 8_000_000, 0.2))
    assert "rate 8000000bit" in fast and "limit 200000" in fast and "burst 10000" in fast
    slow = " ".join(namespaces.tbf("ns", "wan", 100_000, 0.2))
    assert f"limit {10 * 1514}" in slow and f"burst {2 * 1514}" in slow
    bed = build_bed(Profile(uplink_queue_ms=500), 1e6, "snb1")
    assert {s.uplink_queue_s for s in bed.sites if s.uplink_bps} == {0.5}
    with pytest.raises(ValueError):
        Profile(uplink_queue_ms=0)


def test_delay_modes() -> None:
    assert namespaces.DELAY_MODES == ("auto", "netem", "shim", "none")
    with pytest.raises(ValueError):
        namespaces.create(build_bed(Profile(), 1e6, "snb1"), "fast")


def test_whole_report_puts_the_two_halves_side_by_side() -> None:
    from streamer.netbed.report import report

    bed = build_bed(Profile(watchers=1, pages=1, relays=1), 750_000, "snb5")
    viewer = {"continuity": 0.9, "startup_s": 3.0, "lag_s_p50": 4.0, "lag_s_p95": 9.0,
              "bytes_from_peers": 3, "bytes_from_source": 1, "stall_s": 0.5}  # fmt: skip
    page = {**viewer, "stalled_s": 1.25}  # the <video>'s own stalls
    http = {"continuity": 1.0, "startup_s": 1.0, "lag_s_p50": 2.5, "lag_s_p95": 2.5}
    result = {
        "command": "streamer netbed",
        "machine": "test",
        "stream_rate_bps": 750_000.0,
        "delay_mode": "shim",
        "sites": describe_sites(bed.sites),
        "swarm": {
            "figures": {"continuity_min": 0.9, "source_upload_ratio": 2.0},
            "per_viewer": {"watch0": viewer, "page0": page},
            "relays": {"relay0": {"bytes_uploaded": 7_500_000, "duration_s": 60.0}},
            "turn_allocations": 4,
            "machine_busy_cores": 1.9,
            "loop_lag_p99_ms": {"broadcast": 35.0, "relay0": 60.0, "watch0": 40.0},
        },
        "baseline": {
            "figures": {"continuity_min": 1.0, "source_upload_ratio": 2.0},
            "per_viewer": {"watch0": http, "page0": http},
        },
    }
    text = report(result)
    assert "delays and loss by shim" in text
    rows = [line for line in text.splitlines() if line.startswith(("watch0 ", "page0 "))]
    assert len(rows) == 4  # each in the sites table and the viewers table
    assert "0.900" in rows[2] and "0.75" in rows[2] and "1.000" in rows[2]
    assert "0.50" in rows[2] and "1.25" in rows[3]  # the picture's stalls: core, <video>
    assert "relay0: uploaded 1.00 Mbit/s" in text and "TURN allocations" in text
    machine = next(line for line in text.splitlines() if line.startswith("machine:"))
    assert "1.90 cores busy" in machine and "relay0 60 ms" in machine and "watch0 40 ms" in machine
    # The bed's own targets, not loopback's (startup <= 2 s there).
    startup_row = next(line for line in text.splitlines() if line.startswith("startup p50"))
    assert startup_row.endswith("<= 2.5")
    result["delay_mode"] = "none"
    assert "not applied" in report(result)
