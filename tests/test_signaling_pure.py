"""Pure parts of the signaling server: schema, token bucket, tracker, channel registry."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from signaling_helpers import media

from signaling.channels import MAX_CONTACTS, Registry
from signaling.protocol import (
    GetPeers,
    Join,
    Limits,
    ProtocolError,
    Publish,
    Role,
    Signal,
    Status,
    encode,
    parse_client_message,
)
from signaling.ratelimit import TokenBucket
from signaling.tracker import Candidate, IndexedSet, Tracker

LIMITS = Limits()


def parse(message: Any) -> Any:
    text = message if isinstance(message, str) else json.dumps(message)
    return parse_client_message(text, len(text.encode()), LIMITS)


def refused(message: Any) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        parse(message)
    return info.value


# --- protocol -------------------------------------------------------------------------------


def test_parse_join_viewer_and_broadcaster() -> None:
    join = parse({"type": "join", "v": 1, "channel": "cam_1-A", "role": "viewer"})
    assert join == Join(channel="cam_1-A", role="viewer", secret=None, token=None)
    join = parse({"type": "join", "v": 1, "channel": "c", "role": "broadcaster", "secret": "s"})
    assert join.secret == "s"
    rejoin = parse({"type": "join", "v": 1, "channel": "c", "role": "viewer", "want_peers": 0})
    assert rejoin.want_peers == 0


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ("{not json", "bad_json"),
        ("[" * 100_000, "bad_json"),  # nesting bomb: RecursionError must not escape
        ("[1, 2]", "invalid_message"),
        ({"no": "type"}, "invalid_message"),
        ({"type": 7}, "invalid_message"),
        ({"type": "teleport"}, "unknown_type"),
        ({"type": "join", "v": 2, "channel": "c", "role": "viewer"}, "unsupported_version"),
        ({"type": "join", "v": 1, "channel": "bad name", "role": "viewer"}, "bad_channel_name"),
        ({"type": "join", "v": 1, "channel": "x" * 65, "role": "viewer"}, "bad_channel_name"),
        ({"type": "join", "v": 1, "channel": "../etc", "role": "viewer"}, "bad_channel_name"),
        ({"type": "join", "v": 1, "channel": 5, "role": "viewer"}, "bad_channel_name"),
        ({"type": "join", "v": 1, "channel": "c", "role": "admin"}, "invalid_message"),
        ({"type": "join", "v": 1, "channel": "c", "role": "broadcaster"}, "invalid_message"),
        ({"type": "join", "channel": "c", "role": "viewer", "secret": 5}, "invalid_message"),
        ({"type": "join", "channel": "c", "role": "viewer", "want_peers": -1}, "invalid_message"),
        ({"type": "join", "channel": "c", "role": "viewer", "want_peers": True}, "invalid_message"),
        ({"type": "join", "channel": "c", "role": "viewer", "want_peers": "8"}, "invalid_message"),
        ({"type": "signal", "to": "a b", "data": {}}, "invalid_message"),
        ({"type": "signal", "to": "abc", "data": "offer"}, "invalid_message"),
        ({"type": "get_peers", "count": 0}, "invalid_message"),
        ({"type": "get_peers", "count": True}, "invalid_message"),
        ({"type": "get_peers", "count": 3, "exclude": [1]}, "invalid_message"),
        ({"type": "status", "neighbours": ["ok"] * 65}, "invalid_message"),
        ({"type": "status", "upload_bps": -1}, "invalid_message"),
        ({"type": "status", "upload_bps": 1.5}, "invalid_message"),
        ({"type": "status", "latest_seq": "7"}, "invalid_message"),
        ({"type": "status", "stats": {"x": "y"}}, "invalid_message"),
        ({"type": "status", "stats": {f"k{i}": 1 for i in range(33)}}, "invalid_message"),
        ({"type": "publish"}, "invalid_message"),
        ({"type": "publish", "media": media(chunk_seconds=0)}, "invalid_message"),
        # json.dumps writes the non-standard literal NaN, which Python's json.loads accepts.
        ({"type": "publish", "media": media(chunk_seconds=float("nan"))}, "invalid_message"),
        ({"type": "publish", "media": media(init_segment="not base64!")}, "invalid_message"),
        ({"type": "publish", "media": media(public_key="")}, "invalid_message"),
        ({"type": "publish", "media": media(bitrate_bps="1M")}, "invalid_message"),
        ({"type": "publish", "media": media(mime_type="")}, "invalid_message"),
    ],
)
def test_parse_refuses_bad_messages(message: Any, code: str) -> None:
    assert refused(message).code == code


def test_join_refusals_are_fatal_others_are_not() -> None:
    assert refused({"type": "join", "v": 9, "channel": "c", "role": "viewer"}).fatal
    assert refused({"type": "join", "v": 1, "channel": "", "role": "viewer"}).fatal
    assert not refused({"type": "teleport"}).fatal
    assert not refused("{").fatal


def test_size_caps() -> None:
    big_signal = {"type": "signal", "to": "abc", "data": {"sdp": "x" * 70_000}}
    assert refused(big_signal).code == "too_large"
    mid_signal = {"type": "signal", "to": "abc", "data": {"sdp": "x" * 40_000}}
    assert refused(mid_signal).code == "too_large"  # under the frame cap, over the data cap
    ok_signal = parse({"type": "signal", "to": "abc", "data": {"sdp": "x" * 20_000}})
    assert isinstance(ok_signal, Signal)
    too_big_init = media(init_segment="A" * (4 * (65 * 1024 // 3)))
    assert refused({"type": "publish", "media": too_big_init}).code == "too_large"
    assert refused("x" * (LIMITS.max_publish_bytes + 1)).code == "too_large"


def test_publish_keeps_extra_fields_and_accepts_64k_init() -> None:
    init = media(init_segment="A" * (4 * (64 * 1024 // 3)), extra_field={"a": 1})
    published = parse({"type": "publish", "media": init})
    assert isinstance(published, Publish)
    assert published.media["extra_field"] == {"a": 1}


def test_get_peers_count_is_capped_and_status_dedups() -> None:
    request = parse({"type": "get_peers", "count": 10_000, "exclude": ["a", "b"]})
    assert request == GetPeers(count=LIMITS.max_get_peers, exclude=frozenset({"a", "b"}))
    status = parse({"type": "status", "neighbours": ["a", "a", "b"], "latest_seq": 5})
    assert isinstance(status, Status)
    assert status.neighbours == ("a", "b")
    assert status.spare_upload_bps is None


def test_encode_is_ascii_even_with_lone_surrogates() -> None:
    decoded = json.loads('{"data": "\\ud800"}')
    text = encode({"type": "signal", "data": decoded})
    text.encode("ascii")  # would raise if a surrogate leaked into the output
    assert json.loads(text)["data"]["data"] == "\ud800"


# --- token bucket ------------------------------------------------------------------------------


def test_token_bucket_burst_then_rate() -> None:
    bucket = TokenBucket(rate_per_s=10, burst=5, now=100.0)
    assert [bucket.allow(100.0) for _ in range(6)] == [True] * 5 + [False]
    assert not bucket.allow(100.05)  # half a token refilled
    assert bucket.allow(100.11)
    assert bucket.tokens(1000.0) == 5  # never above burst
    assert not bucket.allow(1000.0, cost=6)  # a cost above burst never passes
    assert bucket.tokens(1000.0) == 5  # and spends nothing


def test_token_bucket_ignores_clock_going_back() -> None:
    bucket = TokenBucket(rate_per_s=1, burst=1, now=50.0)
    assert bucket.allow(50.0)
    assert not bucket.allow(10.0)
    assert bucket.tokens(50.5) == pytest.approx(0.5)


# --- tracker --------------------------------------------------------------------------------------


def test_indexed_set_add_remove_sample() -> None:
    items: IndexedSet[int] = IndexedSet()
    for i in range(100):
        items.add(i)
    for i in range(0, 100, 2):
        items.discard(i)
    items.discard(1000)
    assert len(items) == 50
    rng = random.Random(1)
    sample = items.sample(10, rng)
    assert len(set(sample)) == 10 and all(i % 2 == 1 for i in sample)
    assert sorted(items.sample(500, rng)) == list(range(1, 100, 2))


def test_tracker_never_returns_requester_or_excluded() -> None:
    tracker = Tracker()
    for i in range(20):
        tracker.add(Candidate(peer_id=f"p{i}", role="viewer"))
    rng = random.Random(7)
    for _ in range(200):
        picked = tracker.select("p0", 8, rng, exclude=frozenset({"p1", "p2"}))
        ids = {c.peer_id for c in picked}
        assert len(ids) == len(picked) == 8
        assert not ids & {"p0", "p1", "p2"}
    assert tracker.select("p0", 50, rng) and len(tracker.select("p0", 50, rng)) == 19


def test_tracker_prefers_relays_spare_upload_and_fresh_chunks() -> None:
    tracker = Tracker()
    rng = random.Random(3)
    tracker.add(Candidate(peer_id="src", role="broadcaster"))
    tracker.update("src", latest_seq=100, spare_upload_bps=0, neighbour_count=4)
    for i in range(50):
        tracker.add(Candidate(peer_id=f"v{i}", role="viewer"))
        tracker.update(f"v{i}", latest_seq=80, spare_upload_bps=0, neighbour_count=8)
    for i in range(5):
        tracker.add(Candidate(peer_id=f"r{i}", role="relay"))
    for i in range(5):
        tracker.add(Candidate(peer_id=f"f{i}", role="viewer"))
        tracker.update(f"f{i}", latest_seq=99, spare_upload_bps=2_000_000, neighbour_count=4)
    hits = {"relay": 0, "fresh": 0, "stale": 0}
    rounds = 400
    for _ in range(rounds):
        for c in tracker.select("someone", 4, rng):
            kind = "relay" if c.role == "relay" else "fresh" if c.peer_id[0] == "f" else "stale"
            hits[kind] = hits.get(kind, 0) + 1
    # 5 relays and 5 fresh peers vs 50 stale ones: uniform would give the stale ones ~83%.
    assert hits["relay"] > hits["stale"]
    assert hits["fresh"] > hits["stale"]
    assert hits["stale"] > 0  # still random: stale peers are not starved entirely


def test_tracker_work_is_bounded_by_count_not_channel_size() -> None:
    tracker = Tracker(sample_factor=4)
    for i in range(50_000):
        tracker.add(Candidate(peer_id=f"p{i}", role="relay" if i % 100 == 0 else "viewer"))
    rng = random.Random(0)
    picked = tracker.select("p1", 8, rng)
    assert len(picked) == 8
    assert tracker.last_examined <= 4 * 8
    # Relays are 1% of the channel but the preferred pool guarantees they are looked at.
    relays = sum(c.role == "relay" for _ in range(50) for c in tracker.select("p1", 8, rng))
    assert relays > 50


def test_tracker_live_edge_moves_only_with_the_broadcaster() -> None:
    tracker = Tracker()
    tracker.add(Candidate(peer_id="liar", role="viewer"))
    tracker.update("liar", latest_seq=10**9, spare_upload_bps=None, neighbour_count=0)
    assert tracker.live_edge_seq is None
    tracker.add(Candidate(peer_id="src", role="broadcaster"))
    tracker.update("src", latest_seq=42, spare_upload_bps=None, neighbour_count=0)
    assert tracker.live_edge_seq == 42
    tracker.remove("liar")
    tracker.update("liar", latest_seq=1, spare_upload_bps=None, neighbour_count=0)  # no-op
    assert "liar" not in tracker and len(tracker) == 1


# --- registry -------------------------------------------------------------------------------------


def _join(registry: Registry, peer_id: str, role: Role = "viewer", **kw: Any) -> Any:
    message = Join(
        channel=kw.pop("channel", "c"), role=role, secret=kw.pop("secret", None), token=None
    )
    return registry.join(message, peer_id, now=kw.pop("now", 0.0))


def _status(neighbours: tuple[str, ...] = (), **kw: Any) -> Status:
    return Status(
        neighbours=neighbours,
        upload_bps=kw.get("upload_bps", 0),
        spare_upload_bps=None,
        latest_seq=kw.get("latest_seq"),
        stats={},
    )


def test_registry_ownership_and_restart() -> None:
    registry = Registry(owner_ttl_s=600)
    _join(registry, "b1", "broadcaster", secret="s3cret")
    with pytest.raises(ProtocolError) as info:
        _join(registry, "evil", "broadcaster", secret="other")
    assert info.value.code == "channel_owned" and info.value.fatal
    assert "evil" not in registry.peers
    registry.publish("b1", media(), now=1.0)
    left = registry.leave("b1", now=5.0)
    assert left is not None and left.broadcast_ended
    assert registry.channels["c"].state == "ended"
    with pytest.raises(ProtocolError):
        _join(registry, "evil", "broadcaster", secret="other", now=6.0)
    result = _join(registry, "b2", "broadcaster", secret="s3cret", now=7.0)
    assert result.channel.broadcaster_id == "b2" and result.replaced is None
    # Secrets are stored only as a keyed hash.
    assert b"s3cret" not in registry.channels["c"].owner_secret_hash  # type: ignore[operator]


def test_registry_same_secret_replaces_a_connected_broadcaster() -> None:
    registry = Registry()
    _join(registry, "b1", "broadcaster", secret="k")
    _join(registry, "v1")
    registry.record_signal("v1", "b1")
    result = _join(registry, "b2", "broadcaster", secret="k")
    assert result.replaced is not None
    assert result.replaced.peer_id == "b1" and result.replaced.notify == {"v1"}
    assert "b1" not in registry.peers and registry.channels["c"].role_counts["broadcaster"] == 1


def test_registry_owned_channel_expires_after_ttl() -> None:
    registry = Registry(owner_ttl_s=600)
    _join(registry, "b1", "broadcaster", secret="k")
    registry.leave("b1", now=100.0)
    assert registry.sweep(now=500.0) == []
    assert "c" in registry.channels
    assert registry.sweep(now=700.0) == ["c"]
    assert registry.channels == {}
    _join(registry, "b9", "broadcaster", secret="someone-else", now=800.0)  # free again


def test_registry_token_caps_and_viewer_waiting_room() -> None:
    registry = Registry(broadcast_token="tok", max_peers_per_channel=2, max_channels=2)
    _join(registry, "v1", channel="early")  # a viewer may wait for a broadcaster
    assert registry.channels["early"].state == "waiting"
    assert registry.public_channels() == []  # but its waiting room is not advertised
    with pytest.raises(ProtocolError) as info:
        _join(registry, "b1", "broadcaster", secret="k", channel="early")
    assert info.value.code == "token_required"
    bad = Join(channel="early", role="broadcaster", secret="k", token="nope")
    with pytest.raises(ProtocolError) as info:
        registry.join(bad, "b1", 0.0)
    assert info.value.code == "forbidden"
    good = Join(channel="early", role="broadcaster", secret="k", token="tok")
    registry.join(good, "b1", 0.0)
    with pytest.raises(ProtocolError) as info:
        _join(registry, "v2", channel="early")
    assert info.value.code == "channel_full"
    _join(registry, "v3", channel="second")
    _join(registry, "v4", channel="third")  # waiting rooms do not count against max_channels
    registry.leave("v3", now=1.0)
    assert "second" not in registry.channels  # unowned and empty: gone at once


def test_registry_waiting_rooms_never_keep_a_broadcaster_out() -> None:
    registry = Registry(max_channels=1, max_waiting_channels=2)
    _join(registry, "v1", channel="w1")
    _join(registry, "v2", channel="w2")
    with pytest.raises(ProtocolError) as info:
        _join(registry, "v3", channel="w3")
    assert info.value.code == "server_full" and "waiting" in info.value.message
    _join(registry, "v4", channel="w1")  # an existing waiting room still takes viewers
    _join(registry, "b1", "broadcaster", secret="k", channel="real")  # the claims' own cap
    with pytest.raises(ProtocolError) as info:
        _join(registry, "b2", "broadcaster", secret="k2", channel="other")
    assert info.value.code == "server_full" and "broadcasts" in info.value.message
    registry.leave("b1", now=1.0)
    registry.sweep(now=1.0 + registry.owner_ttl_s)  # the abandoned claim lapses
    _join(registry, "b3", "broadcaster", secret="k3", channel="w2", now=100.0)
    assert registry.owned == {"w2"} and registry.channels["w2"].state == "waiting"


def test_registry_peer_left_goes_to_watchers_and_contacts_only() -> None:
    registry = Registry()
    for peer_id in ("a", "b", "c", "d"):
        _join(registry, peer_id)
    registry.status("b", _status(("a", "ghost")))  # b lists a (and an unknown id, ignored)
    registry.record_signal("c", "a")
    registry.status("d", _status(("a",)))
    registry.status("d", _status(()))  # d dropped a again
    left = registry.leave("a", now=1.0)
    assert left is not None and left.notify == {"b", "c"}
    assert registry.peers["b"].watchers == set() and "a" not in registry.peers["c"].contacts


def test_registry_signal_only_within_channel() -> None:
    registry = Registry()
    _join(registry, "a", channel="one")
    _join(registry, "b", channel="two")
    for target in ("b", "nobody", "a"):
        with pytest.raises(ProtocolError) as info:
            registry.record_signal("a", target)
        assert info.value.code == "unknown_peer"
    with pytest.raises(ProtocolError) as info:
        registry.record_signal("stranger", "a")
    assert info.value.code == "not_joined"


def test_registry_contacts_are_capped() -> None:
    registry = Registry()
    _join(registry, "hub")
    for i in range(MAX_CONTACTS + 10):
        _join(registry, f"p{i}")
        registry.record_signal(f"p{i}", "hub")
    assert len(registry.peers["hub"].contacts) == MAX_CONTACTS
    assert "hub" not in registry.peers["p0"].contacts  # evicted on both sides


def test_registry_status_tracks_upload_and_forbids_viewer_publish() -> None:
    registry = Registry()
    _join(registry, "b", "broadcaster", secret="k")
    _join(registry, "v")
    registry.status("v", _status(upload_bps=500))
    registry.status("b", _status(upload_bps=2000, latest_seq=9))
    channel = registry.channels["c"]
    assert channel.upload_bps_total == 2500 and channel.tracker.live_edge_seq == 9
    registry.leave("v", now=1.0)
    assert channel.upload_bps_total == 2000
    with pytest.raises(ProtocolError) as info:
        registry.publish("b-not", media(), 0.0)
    assert info.value.code == "not_joined"
    _join(registry, "v2")
    with pytest.raises(ProtocolError) as info:
        registry.end("v2", 0.0)
    assert info.value.code == "forbidden"
