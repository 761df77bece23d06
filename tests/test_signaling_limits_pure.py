"""Pure parts of the abuse limits and of the cluster's Redis model."""

from __future__ import annotations

from signaling import cluster_model as model
from signaling.iplimits import IpLimits, is_loopback


def test_ip_limits_cap_sockets_and_channels_and_forget_what_is_gone() -> None:
    limits = IpLimits(max_connections_per_ip=2, max_channels_per_ip=1, limit_loopback=False)
    assert limits.connect("203.0.113.7") and limits.connect("203.0.113.7")
    assert not limits.connect("203.0.113.7")  # refused, not counted
    assert limits.connect("198.51.100.1")
    assert all(limits.connect("127.0.0.1") for _ in range(10))  # loopback is exempt
    assert limits.enter("203.0.113.7", "a") and limits.enter("203.0.113.7", "a")
    assert not limits.enter("203.0.113.7", "b")
    limits.leave("203.0.113.7", "a")
    limits.leave("203.0.113.7", "a")
    assert limits.enter("203.0.113.7", "b")
    limits.leave("203.0.113.7", "b")
    for address in ["203.0.113.7"] * 2 + ["198.51.100.1"] + ["127.0.0.1"] * 10:
        limits.disconnect(address)
    assert limits.addresses() == 0


def test_ip_limits_zero_means_no_cap_and_loopback_can_be_limited() -> None:
    unlimited = IpLimits(0, 0, limit_loopback=True)
    assert all(unlimited.connect("203.0.113.7") for _ in range(100))
    limited = IpLimits(1, 1, limit_loopback=True)
    assert limited.connect("::1") and not limited.connect("::1")
    assert is_loopback("127.0.0.5") and is_loopback("::1") and not is_loopback("not an ip")


def test_peer_info_round_trips_and_hostile_entries_are_skipped() -> None:
    info = model.PeerInfo("p1", "relay", 12, 3_000_000, 4)
    assert model.decode_info(info.encode()) == info and info.preferred
    assert not model.PeerInfo("p1", "viewer").preferred
    for bad in ("", "[", "{}", '["p1","king",1,2,3]', "[1,2]"):
        assert model.decode_info(bad) is None
    ids = ["x", "y", "z", "me"]
    texts = [info.encode(), model.PeerInfo("dead", "viewer").encode(), None, info.encode()]
    infos = model.decode_infos(texts)
    found = model.live_candidates(ids, infos, {"p1"}, skip=frozenset({"me"}))
    assert [c.peer_id for c in found] == ["x"] and found[0].role == "relay"
    assert model.procs_of(infos) == {"p1", "dead"}


def test_cluster_summary_has_the_shape_of_a_channel_summary() -> None:
    figures = model.empty_figures()
    model.add_figures(figures, '{"viewer": 3, "relay": 1, "broadcaster": 1, "upload_bps_total": 5}')
    model.add_figures(figures, '{"viewer": 2, "upload_bps_total": 1}')
    model.add_figures(figures, "not json")
    claim = {"hash": "h", "peer": "b", "proc": "p1", "media": '{"bitrate_bps": 9}', "since": "100"}
    summary = model.channel_summary("c", claim, figures, {"p1"}, now_unix_s=160.0)
    assert summary["state"] == "live" and summary["broadcaster"] is True
    assert (summary["viewers"], summary["relays"], summary["peers"]) == (5, 1, 7)
    assert summary["uptime_s"] == 60.0 and summary["bitrate_bps"] == 9
    gone = model.channel_summary("c", {**claim, "media": ""}, figures, set(), now_unix_s=0.0)
    assert gone["state"] == "ended" and gone["broadcaster"] is False
    waiting = model.channel_summary("w", {}, model.empty_figures(), set(), now_unix_s=0.0)
    assert waiting["state"] == "waiting"
