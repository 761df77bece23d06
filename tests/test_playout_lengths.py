"""Playout over chunks of any length: a source core releases chunks as a live encoder would (each
when its last frame is shot), a viewer core plays them, and nothing is ever skipped that exists or
played before it exists.

The durations come from tests/scenarios/chunk_durations.json, which the JavaScript core's tests
read too (tests/js/playout_lengths.test.mjs): one behaviour, checked in both languages.
"""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from streamer.protocol import Role
from streamer.swarm import (
    ChunkMissed,
    ChunkPlayed,
    HeaderVerifier,
    Playback,
    SwarmConfig,
    SwarmPeer,
)
from streamer.swarm.drain import drain_link
from tests.test_swarm import publish

SCENARIOS = json.loads((Path(__file__).parent / "scenarios" / "chunk_durations.json").read_text())[
    "scenarios"
]
KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
PUB = KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
CONFIG = SwarmConfig(piece_size_bytes=1000, default_chunk_bytes=4000, min_inflight_bytes=4000)


def deliver(a: SwarmPeer, a_id: str, b: SwarmPeer, b_id: str, now: float) -> None:
    """Everything a and b have for each other, instantly (an ideal link)."""
    moved = True
    while moved:
        moved = False
        for x, x_id, y, y_id in ((a, a_id, b, b_id), (b, b_id, a, a_id)):
            for m in drain_link(x, y_id, now):
                y.receive(x_id, m, now)
                moved = True


def run(durations_s: list[float], join_s: float, gap_after: dict[int, float]) -> dict[str, object]:
    """Release chunks of these durations on a live clock (gap_after: seq -> seconds the input
    stalled after it), a viewer joining at join_s; returns what it played and when."""
    src = SwarmPeer(role=Role.SOURCE, now=0.0, config=CONFIG)
    releases: list[tuple[float, int, float, float]] = []  # (release, seq, start, duration)
    media_s = wall_s = 0.0
    for seq, duration_s in enumerate(durations_s):
        wall_s += duration_s
        releases.append((wall_s, seq, media_s, duration_s))
        media_s += duration_s
        wall_s += gap_after.get(seq, 0.0)
    end_s = wall_s + 15.0
    viewer: SwarmPeer | None = None
    played: list[tuple[int, float]] = []
    missed: list[int] = []
    now = 0.0
    pending = list(releases)
    while now <= end_s:
        while pending and pending[0][0] <= now:
            _, seq, start_s, duration_s = pending.pop(0)
            size = 3000 + 1500 * round(duration_s)
            publish(src, seq, bytes([seq % 256]) * size, start_s, duration_s, now)
        if viewer is None and now >= join_s:
            viewer = SwarmPeer(
                role=Role.VIEWER,
                now=now,
                config=CONFIG,
                verifier=HeaderVerifier(PUB),
                rng=random.Random(5),
            )
            assert src.add_neighbour("v", now) and viewer.add_neighbour("src", now)
        for core in (src, viewer):
            if core is not None and (t := core.next_timer()) is not None and t <= now:
                core.handle_timer(now)
        if viewer is not None:
            deliver(src, "src", viewer, "v", now)
            for event in viewer.pop_events():
                if isinstance(event, ChunkPlayed):
                    played.append((event.seq, now))
                elif isinstance(event, ChunkMissed):
                    missed.append(event.seq)
        now = round(now + 0.01, 6)
    assert viewer is not None and viewer.playback is not None
    return {
        "played": played,
        "missed": missed,
        "release_s": {seq: rel for rel, seq, _, _ in releases},
        "duration_s": dict(enumerate(durations_s)),
        "playback": viewer.playback,
    }


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s["name"] for s in SCENARIOS])
def test_chunks_of_any_length_all_play_and_never_before_they_exist(
    scenario: dict[str, object],
) -> None:
    durations = [float(d) for d in scenario["durations_s"]]  # type: ignore[attr-defined]
    gaps = {int(k): float(v) for k, v in scenario.get("gap_after", {}).items()}  # type: ignore[attr-defined]
    result = run(durations, float(scenario["join_s"]), gaps)  # type: ignore[arg-type]
    played: list[tuple[int, float]] = result["played"]  # type: ignore[assignment]
    release_s: dict[int, float] = result["release_s"]  # type: ignore[assignment]
    duration_s: dict[int, float] = result["duration_s"]  # type: ignore[assignment]
    pb: Playback = result["playback"]  # type: ignore[assignment]
    assert result["missed"] == []
    seqs = [seq for seq, _ in played]
    first = seqs[0]
    # Every chunk from the start point on, once each, in order, up to the last one released.
    assert seqs == list(range(first, len(durations)))
    for seq, at_s in played:
        assert at_s >= release_s[seq], f"chunk {seq} played before it existed"
    # No freeze longer than one chunk (plus the input's own stall): consecutive chunks play no
    # further apart than the earlier one lasts, or than the later one took to be released.
    for (a, at_a), (b, at_b) in itertools.pairwise(played):
        allowed_s = max(duration_s[a], release_s[b] - release_s[a]) + 0.05
        assert at_b - at_a <= allowed_s, f"chunk {b} came {at_b - at_a:.2f} s after {a}"
    assert pb.continuity == 1.0
    assert pb.missed == 0 and pb.late == 0


def test_a_long_chunk_reanchors_playout_by_its_extra_length_only() -> None:
    """Nine 1 s chunks, one 4 s chunk, nine 1 s chunks: playout moves back once, by about the
    3 s the long chunk came late, and every later chunk is due about that much later."""
    durations = [1.0] * 9 + [4.0] + [1.0] * 9
    result = run(durations, 0.0, {})
    pb: Playback = result["playback"]  # type: ignore[assignment]
    assert result["missed"] == []
    assert pb.reanchors == 1
    assert pb.reanchored_s == pytest.approx(3.0, abs=0.05)


def test_a_chunk_that_arrives_whole_after_an_edge_wait_plays_from_now_on() -> None:
    """A client that gets each chunk whole (HTTP) waited at the live edge for seq 1: when it
    comes, the picture resumes now, and the chunks after it are due from there."""
    pb = Playback(chunk_duration_s=1.0, start_behind_chunks=0, joined_s=0.0, target_lag_s=1.0)
    pb.hear_of(0)
    assert pb.start_if_ready(0.0, True, 0.0, 0.0)
    have = {0: (0.0, 0.0)}  # seq -> (media start, release), whole chunks only

    def due(now: float) -> list[tuple[int, bool]]:
        return pb.due(
            now,
            lambda s: have[s][0] if s in have else float(s),
            have.__contains__,
            None,
            lambda s: have[s][1] if s in have else None,
            lambda s: all(k < s for k in have),
        )

    assert due(1.0) == [(0, True)]
    assert due(9.0) == [] and pb.waiting_at_edge
    have[1] = (1.0, 1.5)  # released long ago, but it reached us only at 9 s
    assert due(9.0) == [(1, True)]
    assert pb.deadline(1, 1.0, 9.0) == pytest.approx(9.0)
    assert pb.deadline(2, 2.0, 9.0) == pytest.approx(10.0)
    # The picture stood still from seq 1's first deadline (2 s) until it came (9 s).
    assert pb.paused_s == pytest.approx(7.0) and pb.longest_pause_s == pytest.approx(7.0)
    assert pb.continuity == 1.0


def test_playout_skips_a_chunk_only_when_a_later_one_exists() -> None:
    """A seq that never comes while the next one does (a restart's gap) is skipped at once; a
    seq nothing is known after (the live edge) is waited for, however long."""
    pb = Playback(
        chunk_duration_s=1.0,
        start_behind_chunks=0,
        joined_s=0.0,
        target_lag_s=1.0,
        stall_step_s=0.5,
        max_stall_s=2.0,
        max_lag_added_s=10.0,
    )
    pb.hear_of(0)
    assert pb.start_if_ready(0.0, True, 0.0, 0.0)
    headers = {0: (0.0, 0.0)}  # seq -> (media start, release)
    complete = {0}

    def due(now: float, newest: int) -> list[tuple[int, bool]]:
        return pb.due(
            now,
            lambda s: headers[s][0] if s in headers else float(s),
            lambda s: s in complete,
            lambda s: s in headers,
            lambda s: headers[s][1] if s in headers else None,
            lambda s: s not in headers and s > newest,
        )

    assert due(1.5, 0) == [(0, True)]
    assert due(30.0, 0) == [] and pb.waiting_at_edge  # seq 1 is past the edge: wait
    headers[2] = (2.0, 29.0)  # seq 1 never came; seq 2 did, released at 29 s
    assert due(29.5, 2) == [(1, False)]  # seq 1 skipped at once; seq 2 re-anchored
    assert not pb.waiting_at_edge and pb.reanchors == 1
    assert pb.deadline(2, 2.0, 29.5) == pytest.approx(29.0 + pb.start_lag_s)
    assert pb.stall_s == 0.0 and pb.lag_added_s == 0.0
    complete.add(2)
    assert due(30.0, 2) == [(2, True)]


def test_seqs_a_restarted_broadcast_skipped_count_nowhere() -> None:
    """The old session's newest chunk was seq 3; the new one starts at seq 40 (its media
    description says so): seqs 4-39 never existed, and skipping them is no loss."""
    pb = Playback(chunk_duration_s=1.0, start_behind_chunks=0, joined_s=0.0, target_lag_s=1.0)
    pb.hear_of(3)
    assert pb.start_if_ready(0.0, True, 3.0, 0.0)
    pb.skip_never_released(4, 40)
    have = {3: (3.0, 0.0), 40: (40.0, 38.0)}  # seq -> (media start, release)
    played = pb.due(
        39.5,
        lambda s: have[s][0] if s in have else float(s),
        have.__contains__,
        have.__contains__,
        lambda s: have[s][1] if s in have else None,
        lambda s: all(k < s for k in have),
    )
    assert played == [(3, True), (40, True)]
    assert pb.missed == 0 and pb.continuity == 1.0
