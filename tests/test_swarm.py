"""Swarm core with explicit time: scheduler policy, playout rules, epochs, and core cases not yet
shared. Behaviour both cores must show is tested once, for both, in tests/conformance/scenarios/
(tests/test_conformance.py runs them here, tests/js/conformance.test.mjs on the JS core)."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterable
from dataclasses import replace

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from streamer.protocol import (
    PROTOCOL_VERSION,
    BufferMap,
    Cancel,
    Capability,
    ChunkHeader,
    ChunkSigner,
    Have,
    Hello,
    Piece,
    Request,
    Role,
    decode_message,
    encode_message,
    make_chunk_header,
)
from streamer.swarm import (
    Ask,
    DropNeighbour,
    HeaderVerifier,
    Holder,
    Playback,
    SwarmConfig,
    SwarmPeer,
    Want,
    plan_pieces,
)
from streamer.swarm.drain import drain_link

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
PUB = KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
CONFIG = SwarmConfig(piece_size_bytes=1000, default_chunk_bytes=4000, min_inflight_bytes=4000)


def viewer(now: float = 0.0, **kw: object) -> SwarmPeer:
    return SwarmPeer(
        role=Role.VIEWER,
        now=now,
        config=kw.pop("config", CONFIG),  # type: ignore[arg-type]
        verifier=HeaderVerifier(PUB),
        rng=random.Random(5),
    )


def source(now: float = 0.0, config: SwarmConfig = CONFIG) -> SwarmPeer:
    return SwarmPeer(role=Role.SOURCE, now=now, config=config)


def publish(
    src: SwarmPeer,
    seq: int,
    data: bytes,
    start_s: float,
    duration_s: float,
    now: float,
    epoch: int = 0,
) -> None:
    """Sign chunk seq with KEY outside the core, as a driver does, and offer it."""
    signer = ChunkSigner(KEY, src.config.piece_size_bytes, epoch)
    src.publish_chunk(signer.sign(seq, data, start_s, duration_s, now), data, now)


def greet(core: SwarmPeer, pids: Iterable[str], now: float) -> None:
    """Open links from core to viewers pids, take their hellos, drop what core sent so far."""
    for pid in pids:
        core.add_neighbour(pid, now)
        core.receive(pid, hello(Role.VIEWER), now)
        drain_control(core, pid)


def drain_control(core: SwarmPeer, pid: str) -> list[object]:
    out: list[object] = []
    while (data := core.next_control_message(pid)) is not None:
        out.append(decode_message(data))
    return out


def drain_data(core: SwarmPeer, pid: str, now: float) -> list[bytes]:
    out = []
    while (data := core.next_data_message(pid, now)) is not None:
        out.append(data)
    return out


def hello(role: Role) -> bytes:
    return encode_message(Hello(PROTOCOL_VERSION, role, Capability.UPLOAD | Capability.PARTIAL))


def published(seqs: range, now: float = 10.0, config: SwarmConfig = CONFIG) -> SwarmPeer:
    """A source holding chunks seqs (4,500 bytes each: 5 pieces)."""
    src = source(config=config)
    for seq in seqs:
        publish(src, seq, bytes([seq % 256]) * 4500, seq * 1.0, 1.0, now)
    return src


def signed_header(
    seq: int, start_s: float | None = None, duration_s: float = 1.0, release_s: float = 10.0
) -> ChunkHeader:
    """The header `published` would sign for seq (or with another start, duration, release)."""
    start = seq * 1.0 if start_s is None else start_s
    return make_chunk_header(
        seq=seq,
        data=bytes([seq % 256]) * 4500,
        start_us=round(start * 1e6),
        duration_us=round(duration_s * 1e6),
        release_us=round(release_s * 1e6),
        piece_size=CONFIG.piece_size_bytes,
        signing_key=KEY,
    )


ALL = -1  # Holder.known_mask of a neighbour holding the whole chunk


def test_scheduler_urgent_first_then_rarest_first() -> None:
    wants = [
        Want(10, 5.0, (0,), False, (Holder("a", ALL), Holder("b", ALL), Holder("c", ALL))),
        Want(11, 6.0, (0,), False, (Holder("a", ALL),)),
        Want(9, 1.2, (0,), False, (Holder("b", ALL), Holder("c", ALL))),
        Want(8, 1.0, (0,), False, (Holder("c", ALL),)),
    ]
    asks = plan_pieces(wants, {"a": 5, "b": 5, "c": 5}, 0.0, 1.5, random.Random(1))
    assert [a.seq for a in asks] == [8, 9, 11, 10]
    assert asks[0] == Ask(8, "c", (0,), False)
    assert {a.seq: a.peer_id for a in asks}[11] == "a"


def test_scheduler_splits_a_chunk_over_the_holders_of_each_piece() -> None:
    # a holds pieces 0 and 1, b holds 2 and 3 (their haves); nobody holds piece 4 yet.
    holders = (Holder("a", 0b0011), Holder("b", 0b1100))
    want = Want(5, 9.0, (0, 1, 2, 3, 4), False, holders)
    asks = plan_pieces([want], {"a": 9, "b": 9}, 0.0, 1.5, random.Random(2))
    assert sorted((a.peer_id, a.pieces) for a in asks) == [("a", (0, 1)), ("b", (2, 3))]
    # With room for one piece each, the whole-chunk holder c takes what is left.
    holders3 = (Holder("a", 0b0011), Holder("b", 0b1100), Holder("c", ALL))
    want = Want(5, 9.0, (0, 1, 2, 3, 4), False, holders3)
    asks = plan_pieces([want], {"a": 1, "b": 1, "c": 1}, 0.0, 1.5, random.Random(2))
    assert sum(len(a.pieces) for a in asks) == 3
    assert len({i for a in asks for i in a.pieces}) == 3  # never one piece from two holders


def test_scheduler_prefers_peers_and_uses_the_source_only_when_needed() -> None:
    rng = random.Random(2)
    src_all = Holder("src", ALL, source=True)
    later = Want(20, 9.0, (0,), False, (Holder("p", ALL), src_all))
    assert plan_pieces([later], {"p": 1, "src": 9}, 0.0, 1.5, rng) == [Ask(20, "p", (0,), False)]
    # A peer with no room: a non-urgent piece waits for it, an urgent one goes to the source.
    assert plan_pieces([later], {"p": 0, "src": 9}, 0.0, 1.5, rng) == []
    urgent = Want(21, 1.0, (0,), False, (Holder("p", ALL), src_all))
    assert plan_pieces([urgent], {"p": 0, "src": 9}, 0.0, 1.5, rng) == [Ask(21, "src", (0,), False)]
    # Nobody else holds it: with a peer linked (busy, or holding nothing yet) the source keeps
    # its copy budget for urgent requests; a viewer linked to the source alone asks it anyway.
    only_source = Want(22, 9.0, (0,), False, (src_all,))
    assert plan_pieces([only_source], {"src": 9, "p": 0}, 0.0, 1.5, rng) == []
    alone = plan_pieces([only_source], {"src": 9}, 0.0, 1.5, rng, peers_linked=False)
    assert alone == [Ask(22, "src", (0,), False)]
    # Super-seeding: the source advertised piece 3 to us alone; we fetch it (and the header) there.
    seeded = Want(23, 9.0, (), True, (Holder("src", 0b1000, source=True),))
    assert plan_pieces([seeded], {"src": 9}, 0.0, 1.5, rng) == [Ask(23, "src", (3,), True)]


def test_scheduler_counts_holders_left_out_for_lack_of_room() -> None:
    """The core leaves neighbours without room out of holders (they cannot be asked) but still
    gives their number, for rarest-first."""
    rng = random.Random(2)
    # Rarest first by the full count: seq 41 (1 holder in all) before 40 (3, two of them busy).
    common = Want(40, 9.0, (0,), False, (Holder("a", ALL),), holder_count=3)
    rare = Want(41, 9.5, (0,), False, (Holder("a", ALL),), holder_count=1)
    asks = plan_pieces([common, rare], {"a": 1}, 0.0, 1.5, rng)
    assert asks == [Ask(41, "a", (0,), False)]


def test_scheduler_asks_an_earlier_receiver_only_for_urgent_chunks() -> None:
    rng = random.Random(4)
    receiving = Holder("p", 0, earlier=True)
    calm = Want(30, 9.0, (0, 1), False, (receiving,))
    assert plan_pieces([calm], {"p": 9}, 0.0, 1.5, rng) == []
    urgent = Want(31, 1.0, (0, 1), False, (receiving,))
    assert plan_pieces([urgent], {"p": 9}, 0.0, 1.5, rng) == [Ask(31, "p", (0, 1), False)]


def test_scheduler_room_limits_assignments_per_neighbour() -> None:
    wants = [
        Want(s, 9.0 + s, (0, 1, 2), False, (Holder("a", ALL), Holder("b", ALL))) for s in range(4)
    ]
    asks = plan_pieces(wants, {"a": 2, "b": 2}, 0.0, 1.5, random.Random(3))
    assert sum(len(a.pieces) for a in asks) == 4
    assert sum(len(a.pieces) for a in asks if a.peer_id == "a") == 2


def test_scheduler_moves_a_stuck_piece_to_another_holder_never_back_to_its_own() -> None:
    # Pieces 0 and 1 wait at a; 2 is missing. Only b may take 0 and 1; 2 may go to either.
    stuck = ((0, "a"), (1, "a"))
    want = Want(7, 9.0, (0, 1, 2), False, (Holder("a", ALL), Holder("b", ALL)), 2, stuck)
    for seed in range(8):
        asks = plan_pieces([want], {"a": 9, "b": 9}, 0.0, 1.5, random.Random(seed))
        by_peer = {a.peer_id: set(a.pieces) for a in asks}
        assert {0, 1} <= by_peer["b"] and by_peer.get("a", set()) <= {2}
    # With no other holder with room, a stuck piece stays where it is (not asked again).
    asks = plan_pieces([want], {"a": 9, "b": 0}, 0.0, 1.5, random.Random(1))
    assert asks == [Ask(7, "a", (2,), False)]


def connect(a: SwarmPeer, a_id: str, b: SwarmPeer, b_id: str, now: float) -> None:
    assert a.add_neighbour(b_id, now) and b.add_neighbour(a_id, now)
    for data in [m for m in iter(lambda: a.next_control_message(b_id), None)]:
        b.receive(a_id, data, now)
    for data in [m for m in iter(lambda: b.next_control_message(a_id), None)]:
        a.receive(b_id, data, now)


def exchange(
    a: SwarmPeer, a_id: str, b: SwarmPeer, b_id: str, now: float, rounds: int = 20
) -> None:
    """Deliver everything a and b have for each other (control and data), instantly."""
    for _ in range(rounds):
        moved = False
        for x, x_id, y, y_id in ((a, a_id, b, b_id), (b, b_id, a, a_id)):
            for m in drain_link(x, y_id, now):
                y.receive(x_id, m, now)
                moved = True
        if not moved:
            return


def test_playout_skips_a_chunk_that_never_comes() -> None:
    pb = Playback(chunk_duration_s=1.0, start_behind_chunks=0, joined_s=0.0, target_lag_s=1.0)
    pb.hear_of(7)
    assert pb.start_if_ready(0.5, True, media_start_s=7.0, release_s=0.2)
    assert pb.play_start_s == 1.2
    have = {7, 9}
    out = pb.due(3.3, lambda s: float(s), lambda s: s in have)
    assert out == [(7, True), (8, False), (9, True)]
    assert pb.continuity == 2 / 3 and pb.startup_s == 1.2


def adaptive(**kw: float) -> Playback:
    settings = dict(lag_margin_s=1.0, lag_step_s=0.5, stall_step_s=0.5, max_stall_s=1.0)
    settings.update(kw)
    pb = Playback(
        chunk_duration_s=1.0,
        start_behind_chunks=0,
        joined_s=0.0,
        target_lag_s=2.0,
        max_lag_added_s=3.0,
        **settings,
    )
    pb.hear_of(0)
    assert pb.start_if_ready(1.0, True, media_start_s=0.0, release_s=0.0)
    return pb


def test_playout_slows_down_after_a_close_call_within_a_step() -> None:
    pb = adaptive()
    assert pb.play_start_s == 2.0
    assert pb.completed(deadline_s=4.0, now=2.5) == 0.0  # 1.5 s to spare: no change
    assert pb.completed(deadline_s=4.0, now=3.8) == 0.5  # 0.2 s to spare: capped at a step
    assert abs(pb.completed(deadline_s=4.5, now=3.8) - 0.3) < 1e-9  # 0.7 s to spare: 0.3 more
    assert abs(pb.play_start_s - 2.8) < 1e-9 and abs(pb.lag_added_s - 0.8) < 1e-9
    assert pb.startup_s == 2.0  # startup is when playout began, not where it moved


def test_playout_stalls_for_a_late_chunk_and_counts_it_against_continuity() -> None:
    pb = adaptive()
    have = {0, 2}
    assert pb.due(2.1, float, lambda s: s in have) == [(0, True)]
    assert pb.due(3.1, float, lambda s: s in have) == []  # chunk 1 due at 3.0: stall 0.5 s
    assert pb.play_start_s == 2.5 and pb.stall_s == 0.5
    have.add(1)
    assert pb.due(3.6, float, lambda s: s in have) == [(1, True)]
    assert (pb.played, pb.late, pb.missed) == (1, 1, 0) and pb.continuity == 0.5
    assert pb.not_on_time == [{"seq": 1, "after_start_s": 1.6, "played": True}]


def test_playout_does_not_stall_for_a_chunk_nobody_announced() -> None:
    pb = adaptive()
    # Chunk 1 is due at 3.0 and missing; nobody has announced it (a gap in the stream).
    out = pb.due(3.1, float, lambda s: s in {0, 2}, may_come=lambda s: s != 1)
    assert out == [(0, True), (1, False)] and pb.stall_s == 0.0 and pb.missed == 1


def test_playout_catches_up_after_a_run_of_early_chunks_but_not_below_target() -> None:
    pb = adaptive(catch_up_margin_s=1.5, catch_up_step_s=0.2, catch_up_chunks=3)
    assert pb.completed(deadline_s=4.0, now=3.8) == 0.5  # a close call: lag 2.0 -> 2.5
    assert pb.completed(deadline_s=6.0, now=4.0) == 0.0  # early, 1 in a row
    assert pb.completed(deadline_s=7.0, now=5.0) == 0.0  # 2 in a row
    assert abs(pb.completed(deadline_s=8.0, now=6.0) + 0.2) < 1e-9  # 3: 0.2 s closer
    assert abs(pb.completed(deadline_s=9.0, now=7.0) + 0.2) < 1e-9
    assert abs(pb.completed(deadline_s=10.0, now=8.0) + 0.1) < 1e-9  # only down to target
    assert pb.completed(deadline_s=11.0, now=9.0) == 0.0
    assert abs(pb.start_lag_s + pb.lag_added_s - pb.target_lag_s) < 1e-9


def test_playout_skips_after_stalling_max_stall_s() -> None:
    pb = adaptive()
    assert pb.due(3.1, float, lambda s: s == 0) == [(0, True)]
    assert pb.due(4.1, float, lambda s: s == 0) == [(1, False)]  # stalled 1.0 s, then skipped
    assert pb.stall_s == 1.0 and pb.missed == 1
    assert pb.not_on_time == [{"seq": 1, "after_start_s": 2.1, "played": False}]
    # The lag added never exceeds max_lag_added_s: beyond it, chunks are skipped at once.
    pb.lag_added_s = pb.max_lag_added_s
    assert pb.due(10.0, float, lambda s: s == 0)[0] == (2, False)


def test_a_genuine_header_of_another_broadcast_session_is_ignored() -> None:
    """The source signs its epoch into each header; a viewer bound to another epoch (the media
    description names the current session) never stores a genuine header of another session (a
    replay), and does not drop the honest neighbour that forwarded a restarted broadcaster's
    header just before the new media description reached us."""
    header = make_chunk_header(
        seq=3,
        data=b"x" * 4500,
        start_us=3_000_000,
        duration_us=1_000_000,
        release_us=10_000_000,
        piece_size=CONFIG.piece_size_bytes,
        signing_key=KEY,
        epoch=6,
    )
    assert HeaderVerifier(PUB).verify(header)
    assert HeaderVerifier(PUB, epoch=6).verify(header)
    assert not HeaderVerifier(PUB, epoch=7).verify(header)
    current = SwarmPeer(
        role=Role.VIEWER, now=0.0, config=CONFIG, verifier=HeaderVerifier(PUB, epoch=7)
    )
    current.add_neighbour("old", 0.0)
    current.receive("old", hello(Role.VIEWER), 0.0)
    current.receive("old", encode_message(header), 0.1)
    assert not [e for e in current.pop_events() if isinstance(e, DropNeighbour)]
    assert current.neighbour_ids == ["old"]
    assert current.stats()["chunks_played"] == 0
    assert not any(c.header.seq == 3 for c in current.store)  # not stored


def test_the_source_signs_its_epoch_into_every_header() -> None:
    src = source()
    greet(src, ["v"], 0.0)
    publish(src, 0, b"x" * 4500, 0.0, 1.0, 1.0, epoch=9)
    headers = [m for m in drain_control(src, "v") if isinstance(m, ChunkHeader)]
    assert headers, "the super-seed have carries the header"
    header = headers[0]
    assert header.epoch == 9
    assert HeaderVerifier(PUB, epoch=9).verify(header)


def test_seq_far_ahead_of_the_stream_is_a_protocol_error() -> None:
    src = published(range(0, 2))
    v = viewer(now=10.0)
    connect(src, "src", v, "v", 10.0)
    exchange(src, "src", v, "v", 10.0)
    v.add_neighbour("liar", 10.0)
    v.receive("liar", encode_message(Have(1_000_000, (True,))), 10.1)
    assert [e.peer_id for e in v.pop_events() if isinstance(e, DropNeighbour)] == ["liar"]


def test_source_offers_a_first_copy_that_did_not_spread_to_one_more_linked_neighbour() -> None:
    src = source()
    greet(src, [f"v{i}" for i in range(3)], 0.0)
    publish(src, 0, b"x" * 4500, 0.0, 1.0, 5.0)  # pieces 0..4 seeded to v0 v1 v2 v0 v1
    for i in range(3):
        drain_control(src, f"v{i}")
    # v1 announces piece 0, which the source sent to v0 only: piece 0 spreads, v1 is linked.
    src.receive("v1", encode_message(Have(0, (True, False, False, False, False))), 5.2)
    src.handle_timer(5.0 + CONFIG.source_announce_delay_s)
    haves = [m for m in drain_control(src, "v1") if isinstance(m, Have)]
    # Pieces 2 and 3 (first copies at v2 and v0, not spread) are offered to v1 before the
    # whole-chunk announce; its own first copies (1, 4) and the spread piece 0 are not.
    assert haves[0].pieces == (False, False, True, True, False)
    assert haves[-1].complete


def test_first_have_of_a_chunk_carries_its_header_to_a_neighbour_showing_none_of_it() -> None:
    src = published(range(0, 1))
    relay = viewer(now=10.0)
    connect(src, "src", relay, "r", 10.0)
    exchange(src, "src", relay, "r", 10.0)
    greet(relay, ("fresh", "told"), 10.0)
    # "told" already announced a piece of chunk 0: it holds the header.
    relay.receive("told", encode_message(Have(0, (True, False, False, False, False))), 10.0)
    relay.handle_timer(10.5)
    # Nothing new was verified since: a late joiner gets the buffer map, no push.
    publish(src, 1, b"y" * 4500, 1.0, 1.0, 11.0)
    exchange(src, "src", relay, "r", 11.0)
    relay.handle_timer(11.5)
    to_fresh = drain_control(relay, "fresh")
    to_told = drain_control(relay, "told")
    assert [type(m).__name__ for m in to_fresh if isinstance(m, (ChunkHeader, Have))][:2] == [
        "ChunkHeader",
        "Have",
    ]
    assert sum(isinstance(m, ChunkHeader) for m in to_fresh) == 1  # once per seq
    assert any(isinstance(m, ChunkHeader) and m.seq == 1 for m in to_told)  # it has not seen 1
    assert not any(isinstance(m, ChunkHeader) and m.seq == 0 for m in to_told)


def test_viewer_starts_at_the_newest_chunk_a_peer_holds_whole() -> None:
    v = viewer(now=0.0)
    for pid, role in (("src", Role.SOURCE), ("p", Role.VIEWER)):
        v.add_neighbour(pid, 0.0)
        v.receive(pid, hello(role), 0.0)
    v.receive("src", encode_message(Have(20, (True,) * 5)), 0.1)
    pb = v.playback
    assert pb is not None and pb.start_seq == 20 - CONFIG.start_behind_chunks
    # A peer holds up to 17 whole: 17 is as old as the swarm's spread time, 18 is crossing
    # the swarm now (and it exists: the source announced 20). Start there.
    v.receive("p", encode_message(BufferMap(15, (True, True, True))), 0.2)
    assert pb.start_seq == 18
    # Settled: a frontier one chunk further is not chased (that would restart our fetch)...
    v.receive("p", encode_message(Have(18, (True,) * 5)), 1.0)
    assert pb.start_seq == 18
    # ...but one that left our start point three chunks behind is.
    v.receive("p", encode_message(Have(21, (True,) * 5)), 1.1)
    assert pb.start_seq == 21


def test_playout_begins_once_the_chunk_after_the_start_chunk_is_in_too() -> None:
    """start_margin_s is for the chunks after the start chunk: a viewer joining late, which
    fetches its start chunk and the next together from a source that holds both, begins
    playout the moment both are whole, not a margin later (tests/scenarios/playback_start.json
    has the rule's arithmetic)."""
    src = published(range(16, 20))  # released at 10.0
    v = viewer(now=20.0)
    connect(src, "src", v, "v", 20.0)
    exchange(src, "src", v, "v", 20.0)
    pb = v.playback
    assert pb is not None and pb.start_seq == 18
    assert v.store.is_complete(18) and v.store.is_complete(19)
    assert pb.play_start_s == 20.0 and pb.startup_s == 0.0  # not 20.0 + start_margin_s


def test_a_start_chunk_half_fetched_is_kept_when_the_frontier_runs_ahead() -> None:
    """On a slow link a start chunk takes longer than the frontier's moves: chasing it would
    throw away what was fetched, again and again, and playout would never begin."""
    v = viewer(now=0.0)
    for pid, role in (("src", Role.SOURCE), ("p", Role.VIEWER)):
        v.add_neighbour(pid, 0.0)
        v.receive(pid, hello(role), 0.0)
    v.receive("src", encode_message(Have(20, (True,) * 5)), 0.1)
    v.receive("p", encode_message(BufferMap(15, (True, True, True))), 0.2)
    pb = v.playback
    assert pb is not None and pb.start_seq == 18
    v.receive("p", signed_header(18).encode(), 0.5)
    v.receive("p", encode_message(Piece(18, 0, 5, bytes([18]) * 1000)), 0.6)
    v.receive("p", encode_message(Have(21, (True,) * 5)), 1.1)
    assert pb.start_seq == 18


def test_scheduler_asks_the_source_for_its_first_copy_even_without_room() -> None:
    # The source advertised piece 2 to us alone (super-seeding): nobody else can fetch it.
    seeded = Want(40, 9.0, (2,), False, (Holder("src", 0b100, source=True),))
    asks = plan_pieces([seeded], {"src": 0}, 0.0, 1.5, random.Random(1))
    assert asks == [Ask(40, "src", (2,), False)]
    # A whole-chunk fallback from the source still respects room.
    fallback = Want(41, 1.0, (0,), False, (Holder("src", ALL, source=True),))
    assert plan_pieces([fallback], {"src": 0}, 0.0, 1.5, random.Random(1)) == []


def linked_viewer_with_piece(now: float) -> tuple[SwarmPeer, SwarmPeer, int]:
    """A source with one chunk (5 pieces) and a viewer that got its header and piece 0."""
    src = published(range(0, 1), now=now)
    v = viewer(now=now)
    connect(src, "src", v, "v", now)
    for pid in ("n1", "n2"):
        v.add_neighbour(pid, now)
        v.receive(pid, hello(Role.VIEWER), now)
        drain_control(v, pid)
    src.receive("v", encode_message(Request(0, 0, 1, True)), now)
    for data in drain_data(src, "v", now):
        v.receive("src", data, now)
    return src, v, 0


def test_haves_are_coalesced_per_neighbour() -> None:
    """One have goes at once; pieces verified within have_interval_s travel in the next one."""
    now = 10.0
    src, v, seq = linked_viewer_with_piece(now)
    # The have sent when the header verified went at once ("receiving it, ask me"); piece 0,
    # verified in the same instant, waits for the interval.
    first = [m for m in drain_control(v, "n1") if isinstance(m, Have)]
    assert [h.pieces[:2] for h in first] == [(False, False)]
    # Two more pieces arrive shortly after: no have yet either.
    src.receive("v", encode_message(Request(seq, 1, 2, False)), now + 0.01)
    for data in drain_data(src, "v", now + 0.01):
        v.receive("src", data, now + 0.01)
    assert not [m for m in drain_control(v, "n1") if isinstance(m, Have)]
    timer = v.next_timer()
    assert timer is not None and timer <= now + CONFIG.have_interval_s + 1e-9
    v.handle_timer(now + CONFIG.have_interval_s)
    later = [m for m in drain_control(v, "n1") if isinstance(m, Have)]
    assert [h.pieces[:4] for h in later] == [(True, True, True, False)]


def test_source_stops_super_seeding_a_neighbour_nobody_feeds() -> None:
    """A neighbour whose haves never show pieces from peers (cut off, e.g. a liar everyone
    dropped) gets no first copies once its grace period is over; the linked ones do."""
    src = source()
    for pid in ("linked", "isolated", "other"):
        src.add_neighbour(pid, 0.0)
        src.receive(pid, hello(Role.VIEWER), 0.0)
    seq = 0
    now = 0.0
    while now < CONFIG.source_seed_proof_s + 2.0:
        publish(src, seq, bytes([seq]) * 4500, float(seq), 1.0, now)
        for pid in ("linked", "other"):  # they complete chunks with pieces from peers
            src.receive(pid, encode_message(Have(seq, (True,) * 5)), now + 0.5)
        seq += 1
        now += 1.0
        src.handle_timer(now)
    for pid in ("linked", "isolated", "other"):
        drain_control(src, pid)
    publish(src, seq, b"q" * 4500, float(seq), 1.0, now)
    seeded = {
        pid
        for pid in ("linked", "isolated", "other")
        for m in drain_control(src, pid)
        if isinstance(m, Have) and not m.complete
    }
    assert seeded == {"linked", "other"}


def _slow_holder_of_chunk_6(source_tells: bool = True) -> tuple[SwarmPeer, float]:
    """A viewer playing from the source, and a slow neighbour holding chunk 6 that we asked for
    it and that trickles: one piece in 2 s (the source holds chunk 6 too, and says so unless
    not source_tells). Returns the viewer and its playout start."""
    src = published(range(3, 6), now=10.0)
    v = viewer(now=10.0)
    connect(src, "src", v, "v", 10.0)
    exchange(src, "src", v, "v", 10.1)
    pb = v.playback
    assert pb is not None and pb.play_start_s is not None
    v.add_neighbour("slow", 10.1)
    v.receive("slow", hello(Role.VIEWER), 10.1)
    v.receive("slow", encode_message(Have(6, (True,) * 5)), 10.1)
    asked = [m for m in drain_control(v, "slow") if isinstance(m, Request)]
    assert asked and asked[0].seq == 6
    publish(src, 6, bytes([6]) * 4500, 6.0, 1.0, 10.1)
    for data in iter(lambda: src.next_control_message("v"), None):
        if source_tells:
            v.receive("src", data, 10.1)  # (the source's haves: it holds chunk 6 too)
    header = src.store.get(6).header  # type: ignore[union-attr]  # the slow peer's copy
    v.receive("slow", header.encode(), 10.2)
    piece0 = src.store.get(6).pieces[0]  # type: ignore[union-attr]
    assert piece0 is not None
    v.receive("slow", encode_message(Piece(6, 0, 5, piece0)), 12.2)
    nb = v.neighbour("slow")
    assert nb is not None and nb.meter.rate_bytes_per_s is not None
    return v, pb.play_start_s


def test_urgent_pieces_are_taken_from_a_holder_too_slow_for_the_deadline() -> None:
    v, play_start_s = _slow_holder_of_chunk_6()
    # Chunk 6 is due at play_start + 2 s; 1.4 s before, the rest (4 pieces at ~480 B/s)
    # cannot arrive in time - though the slow peer did make progress (no timeout yet).
    v.handle_timer(play_start_s + 0.6)
    assert v.stats()["timeouts"] == 0
    assert v.stats()["rescues"] >= 1
    assert [m for m in drain_control(v, "slow") if isinstance(m, Cancel) and m.seq == 6]
    nb = v.neighbour("slow")
    assert nb is not None and nb.strikes == 0 and 6 not in nb.assignments


def test_a_slow_holder_keeps_urgent_pieces_when_nobody_else_may_be_asked() -> None:
    """As above, but the source has left: the slow neighbour is the only one that uploads, so
    cancelling there could only cost a round trip (it would be asked again at once, as a last
    resort)."""
    v, play_start_s = _slow_holder_of_chunk_6()
    v.remove_neighbour("src", 12.2)
    v.handle_timer(play_start_s + 0.6)
    assert v.stats()["rescues"] == 0
    assert not [m for m in drain_control(v, "slow") if isinstance(m, Cancel) and m.seq == 6]
    nb = v.neighbour("slow")
    assert nb is not None and 6 in nb.assignments  # still asked there: the rest may come


def test_a_slow_holder_keeps_urgent_pieces_while_no_other_neighbour_holds_them() -> None:
    """As above, but the source stays and has not said it holds chunk 6: cancelled, the pieces
    would be asked again of the slow neighbour at once, as a last resort."""
    v, play_start_s = _slow_holder_of_chunk_6(source_tells=False)
    v.handle_timer(play_start_s + 0.6)
    assert v.stats()["rescues"] == 0
    assert not [m for m in drain_control(v, "slow") if isinstance(m, Cancel) and m.seq == 6]


def test_a_plan_skipped_for_a_neighbour_without_room_is_made_when_room_frees() -> None:
    """A have from a neighbour we may not ask more of does not re-plan (a cost cut); the next
    piece from it frees room, and the pieces it offered meanwhile are asked for then."""
    src = published(range(6, 9), now=10.0)
    v = viewer(now=10.0)
    connect(src, "src", v, "v", 10.0)
    exchange(src, "src", v, "v", 10.1)
    drain_control(v, "src")
    busy = published(range(6, 11), now=10.0)  # the same chunks: a peer that holds them all
    v.add_neighbour("busy", 10.1)
    v.receive("busy", hello(Role.VIEWER), 10.1)
    v.receive("busy", busy.store.get(9).header.encode(), 10.1)  # type: ignore[union-attr]
    v.receive("busy", encode_message(Have(9, (True,) * 5)), 10.1)
    first = [m for m in drain_control(v, "busy") if isinstance(m, Request)]
    assert first and all(r.seq == 9 for r in first)
    nb = v.neighbour("busy")
    assert nb is not None and v.fetching.room(nb) <= 0  # 4 pieces in flight: all the room there is
    v.receive("busy", busy.store.get(10).header.encode(), 10.2)  # type: ignore[union-attr]
    v.receive("busy", encode_message(Have(10, (True,) * 5)), 10.2)
    assert not [m for m in drain_control(v, "busy") if isinstance(m, Request)]
    piece = busy.store.get(9).pieces[first[0].first_index]  # type: ignore[union-attr]
    assert piece is not None
    v.receive("busy", encode_message(Piece(9, first[0].first_index, 5, piece)), 10.3)
    later = [m for m in drain_control(v, "busy") if isinstance(m, Request)]
    assert later, "room freed at busy, yet nothing more was asked of it"


def have_bits(core: SwarmPeer, pid: str) -> list[tuple[bool, ...]]:
    """The piece bits of every have core sent pid so far (its other messages are dropped)."""
    return [m.pieces for m in drain_control(core, pid) if isinstance(m, Have)]


def test_source_offers_a_stuck_first_copy_again_and_again_while_the_chunk_is_young() -> None:
    cfg = replace(CONFIG, source_reseed_interval_s=0.4, source_reseed_window_s=2.0)
    src = SwarmPeer(role=Role.SOURCE, now=0.0, config=cfg)
    pids = ["a", "b", "c", "d", "e"]
    greet(src, pids, 0.0)
    for pid in pids:  # all fed by peers (linked): each may get a second first copy
        src.receive(pid, encode_message(Have(99, (True,))), 0.0)
    publish(src, 0, b"\x00" * 4500, 0.0, 1.0, 0.0)
    for pid in pids:
        drain_control(src, pid)
    offered: dict[float, set[str]] = {}
    now = 0.0
    while (when := src.next_timer()) is not None and when <= 3.0:
        now = when
        src.handle_timer(now)
        for pid in pids:
            # Nobody ever announces piece 0 from elsewhere: it never counts as spreading.
            if any(bits[0] and not all(bits) for bits in have_bits(src, pid)):
                offered.setdefault(round(now, 2), set()).add(pid)
    times = sorted(offered)
    assert times[0] == cfg.source_announce_delay_s
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps and gaps == pytest.approx([cfg.source_reseed_interval_s] * len(gaps))
    assert times[-1] <= cfg.source_reseed_window_s
    whom = [pid for t in times for pid in offered[t]]
    assert len(whom) == len(set(whom)) == 4  # a new uploader each time; a had the first copy
    assert "a" not in whom


def test_a_low_first_measurement_of_a_neighbour_does_not_stick() -> None:
    """Its first pieces come after a second (a retransmission timeout), so its measured rate
    allows one piece in flight; then it answers every request in 0.12 s, shorter than a meter
    sample, each request ended by its one piece. Summed over requests, with the last piece of
    each counted, the rate climbs to what it serves; a meter that dropped such periods kept the
    first measurement for good (test bed: a viewer fetched 0.3 Mbit/s of a 1 Mbit/s stream
    from a relay with room to spare, for the rest of the run)."""
    src = published(range(3, 6), now=10.0)
    v = viewer(now=10.0)
    connect(src, "src", v, "v", 10.0)
    exchange(src, "src", v, "v", 10.1)
    v.add_neighbour("peer", 10.1)
    v.receive("peer", hello(Role.VIEWER), 10.1)
    seqs = range(6, 10)
    for seq in seqs:
        publish(src, seq, bytes([seq]) * 4500, float(seq), 1.0, 10.1)
    drain_control(src, "v")
    now = 10.2
    for seq in seqs:
        v.receive("peer", encode_message(Have(seq, (True,) * 5)), now)
    nb = v.neighbour("peer")
    assert nb is not None

    def answer(delay_s: float) -> int:
        nonlocal now
        asked = [m for m in drain_control(v, "peer") if isinstance(m, Request)]
        now += delay_s
        pieces = 0
        for req in asked:
            chunk = src.store.get(req.seq)
            assert chunk is not None
            if req.want_header:
                v.receive("peer", chunk.header.encode(), now)
            for i in range(req.first_index, min(req.first_index + req.count, len(chunk.pieces))):
                v.receive("peer", encode_message(Piece(req.seq, i, 5, chunk.pieces[i])), now)
                pieces += 1
        return pieces

    assert answer(1.0) >= 1
    first_rate = nb.meter.rate_bytes_per_s
    assert first_rate is not None and first_rate < 4000
    answered = [answer(0.12) for _ in range(10)]
    assert answered[1:3] == [1, 1], answered  # one piece in flight at a time
    rate = nb.meter.rate_bytes_per_s
    assert rate is not None and rate > 2 * first_rate, (first_rate, rate, answered)
