"""The simulator's per-site network (streamer.sim.links), the bed profile and the comparison."""

from __future__ import annotations

import json
import random
from collections import deque
from pathlib import Path
from typing import Any

import pytest

from streamer.cli import main
from streamer.protocol.messages import MsgType
from streamer.sim.bed import BUFFER_HIGH_BYTES, BUFFER_LOW_BYTES, BedScenario, run_bed_scenario
from streamer.sim.compare import MARGINS, compare, comparison_table
from streamer.sim.links import (
    Access,
    QueuedNetwork,
    Transport,
    mathis_bytes_per_s,
    needs_turn,
    path_delay_s,
)
from streamer.sim.network import SimNode
from streamer.transport.rtc import RtcConfig


class FakeCore:
    """Just what the network calls: data handed out from a list, control from a queue."""

    def __init__(self, data: list[bytes] | None = None) -> None:
        self.data = deque(data or [])
        self.control: dict[str, deque[bytes]] = {}
        self.ready: set[str] = set()
        self.received: list[tuple[float, str, bytes]] = []
        self.banned: set[str] = set()
        self.serve_to: str | None = None
        self.link_full: list[tuple[str, bool]] = []
        """set_link_full calls, in order."""
        self.delivered: list[tuple[float, int]] = []
        """uplink_delivered calls: (now, bytes delivered)..."""
        self.outstanding: list[int] = []
        """...and the bytes not delivered yet."""

    def pop_events(self) -> list[Any]:
        return []

    def take_ready(self) -> set[str]:
        ready, self.ready = self.ready, set()
        return ready

    def next_control_message(self, peer_id: str) -> bytes | None:
        queue = self.control.get(peer_id)
        return queue.popleft() if queue else None

    def upload_peers(self) -> list[str]:
        return [self.serve_to] if self.serve_to and self.data else []

    def next_data_message(self, peer_id: str, now: float) -> bytes | None:
        return self.data.popleft() if self.data else None

    def uplink_delivered(self, delivered_bytes: int, outstanding_bytes: int, now: float) -> None:
        self.delivered.append((now, delivered_bytes))
        self.outstanding.append(outstanding_bytes)

    def next_timer(self) -> float | None:
        return None

    def set_link_full(self, peer_id: str, full: bool) -> None:
        self.link_full.append((peer_id, full))

    def receive(self, peer_id: str, data: bytes, now: float) -> None:
        self.received.append((now, peer_id, data))

    def has_room(self) -> bool:
        return True

    def add_neighbour(self, peer_id: str, now: float) -> bool:
        return True

    def remove_neighbour(self, peer_id: str, now: float) -> None:
        pass

    def say(self, peer_id: str, data: bytes) -> None:
        self.control.setdefault(peer_id, deque()).append(data)
        self.ready.add(peer_id)


def _pair(
    a_core: FakeCore,
    *,
    rate: float = 10_000.0,
    access: dict[str, Access] | None = None,
    transport: Transport | None = None,
    seed: int = 1,
) -> tuple[QueuedNetwork, SimNode, FakeCore]:
    net = QueuedNetwork(
        rng=random.Random(seed),
        access=access or {"a": Access(delay_s=0.01), "b": Access(delay_s=0.02)},
        transport=transport or Transport(wire_overhead=0.0, packet_header_bytes=0, sack_bytes=0),
    )
    b_core = FakeCore()
    a = SimNode("a", a_core, rate)  # type: ignore[arg-type]
    b = SimNode("b", b_core, rate)  # type: ignore[arg-type]
    net.nodes.update(a=a, b=b)
    a.links.add("b")
    b.links.add("a")
    return net, a, b_core


def test_a_control_message_sent_after_data_waits_behind_it() -> None:
    core = FakeCore([bytes([1]) * 1000 for _ in range(5)])
    core.serve_to = "b"
    net, a, b_core = _pair(core)
    net.pump(a)  # all five pieces into the link's buffer and, as room allows, the uplink
    core.say("b", b"\x09request")
    net.pump(a)
    net.queue.run_until(5.0)
    kinds = [data[0] for _t, _src, data in b_core.received]
    assert kinds == [1, 1, 1, 1, 1, 9]
    control_at = b_core.received[-1][0]
    # 5,000 bytes at 10,000 B/s leave first, then the request, then 30 ms of path.
    assert control_at == pytest.approx(5_008 / 10_000 + 0.03)


def test_a_small_message_costs_a_packet_header() -> None:
    core = FakeCore()
    transport = Transport(wire_overhead=0.0, packet_header_bytes=85, sack_bytes=0)
    net, a, b_core = _pair(core, transport=transport)
    core.say("b", b"\x03have")
    net.pump(a)
    net.queue.run_until(1.0)
    # 5 bytes and one packet's 85 bytes of headers at 10,000 B/s, then 30 ms of path.
    assert b_core.received[0][0] == pytest.approx(90 / 10_000 + 0.03)


def test_a_receiver_pays_for_its_sacks_on_its_own_uplink() -> None:
    core = FakeCore([bytes(1200) for _ in range(10)])
    core.serve_to = "b"
    transport = Transport(wire_overhead=0.0, packet_header_bytes=0, sack_bytes=100)
    net, a, b_core = _pair(core, transport=transport, rate=100_000.0)
    net.pump(a)
    net.queue.run_until(5.0)
    assert len(b_core.received) == 10  # 12 ms apart
    # The first piece finds no SACK within 0.1 s: one at once; then one per two full packets.
    assert net.sacks == 1 + 4
    # Each took 100 bytes of b's uplink (1 ms at 100,000 B/s) when it went.
    assert net._uplink_until["b"] == pytest.approx(b_core.received[-2][0] + 0.001)


def test_the_uplink_queue_holds_at_most_its_time_of_data() -> None:
    core = FakeCore([bytes(1000) for _ in range(20)])
    core.serve_to = "b"
    access = {"a": Access(delay_s=0.01, queue_s=0.25), "b": Access(delay_s=0.02)}
    net, a, b_core = _pair(core, access=access)
    net.pump(a)
    link = net.link("a", "b")
    # The uplink took messages until it held 0.25 s (2,500 bytes): 3 of them; 17 wait in the
    # transport buffer.
    assert len(link.buffer) == 17
    assert link.buffered_bytes == 17_000
    net.queue.run_until(0.2)
    assert len(link.buffer) == 15  # two left the uplink, two more went in
    net.queue.run_until(10.0)
    assert len(b_core.received) == 20
    assert b_core.received[-1][0] == pytest.approx(2.0 + 0.03)


def test_data_is_pulled_to_the_high_mark_and_again_from_the_low_one() -> None:
    core = FakeCore([bytes(1000) for _ in range(40)])
    core.serve_to = "b"
    transport = Transport(
        buffer_high_bytes=10_000,
        buffer_low_bytes=2_000,
        wire_overhead=0.0,
        packet_header_bytes=0,
        sack_bytes=0,
    )
    net, a, _b = _pair(core, transport=transport, rate=1_000_000.0)
    access = net.access
    net.access = {**access, "a": Access(delay_s=0.01, queue_s=0.001)}  # an uplink of 1 message
    net.pump(a)
    assert len(core.data) == 30  # 10 pulled: the high mark
    assert core.link_full == [("b", True)]  # the core is told: the link holds no slot now
    net.queue.run_until(0.005)  # ~6 sent at 1 ms each: 4 buffered, above the low mark
    assert len(core.data) == 30
    net.queue.run_until(0.012)  # drained to 2,000 bytes: pulled to the high mark again
    assert 20 <= len(core.data) < 30
    assert core.link_full[:3] == [("b", True), ("b", False), ("b", True)]


@pytest.mark.parametrize("gated", [True, False])
def test_the_uplink_gate_bounds_what_all_links_buffer(gated: bool) -> None:
    """As the drivers do: data goes into a link that holds some only while all links together
    buffer less than the gate's window (32 KiB until a drain rate is measured, then 0.1 s of
    it); without the gate only each link's high mark limits."""
    core = FakeCore([bytes(1000) for _ in range(400)])
    core.serve_to = "b"
    transport = Transport(
        buffer_high_bytes=1024 * 1024,
        buffer_low_bytes=512 * 1024,
        wire_overhead=0.0,
        packet_header_bytes=0,
        sack_bytes=0,
        loss_throughput=False,
        uplink_gate=gated,
    )
    net, a, _b = _pair(core, transport=transport, rate=100_000.0)
    net.access = {**net.access, "a": Access(delay_s=0.01, queue_s=0.001)}
    net.pump(a)
    link = net.link("a", "b")
    # 33 pulled (the last with 32,000 < 32 KiB buffered), one of them already in the uplink
    assert link.buffered_bytes == (32_000 if gated else 399_000)
    most = 0
    t = 0.0
    while t < 2.0:
        t += 0.01
        net.queue.run_until(t)
        if t > 0.5:
            most = max(most, link.buffered_bytes)
    if gated:
        assert most <= 100_000 * 0.1 + 1000  # 0.1 s of the measured drain rate, plus a message
        assert core.data  # still pulling as the link drains
    else:
        assert most > 100_000


def test_path_delays_are_both_sites_and_turn_adds_its_site_twice() -> None:
    a, b = Access(delay_s=0.01), Access(delay_s=0.02)
    assert path_delay_s(a, b, None) == pytest.approx(0.03)
    sym, cone = Access(delay_s=0.01, nat="symmetric"), Access(delay_s=0.02, nat="cone")
    assert needs_turn(sym, cone) and needs_turn(cone, sym) and needs_turn(sym, sym)
    assert not needs_turn(sym, Access(nat="none")) and not needs_turn(cone, cone)
    assert path_delay_s(sym, cone, 0.0025) == pytest.approx(0.035)
    assert path_delay_s(sym, cone, None) == pytest.approx(0.03)


def test_a_message_arrives_after_its_serialisation_and_both_delays() -> None:
    net, a, b_core = _pair(FakeCore(), rate=1000.0)
    net._transmit(a, "b", bytes(100))
    net.queue.run_until(1.0)
    assert b_core.received[0][0] == pytest.approx(0.1 + 0.03)


def _lossy(unordered_channel: bool) -> Transport:
    """Only loss and its recovery: no overheads, SACKs or throughput cap."""
    return Transport(
        wire_overhead=0.0,
        packet_header_bytes=0,
        sack_bytes=0,
        loss_throughput=False,
        rto_s=1.0,
        unordered_channel=unordered_channel,
    )


def test_loss_delays_by_a_retransmission_and_holds_what_follows() -> None:
    access = {"a": Access(delay_s=0.01, loss=0.5), "b": Access(delay_s=0.02)}
    transport = _lossy(False)  # (one of the messages starts with the piece type's byte)
    net, a, b_core = _pair(FakeCore(), rate=1e9, access=access, transport=transport)
    for i in range(20):
        net._transmit(a, "b", bytes([i]) * 100)
    net.queue.run_until(30.0)
    times = [t for t, _s, _d in b_core.received]
    assert [d[0] for _t, _s, d in b_core.received] == list(range(20))  # in order
    assert times == sorted(times)
    assert net.retransmissions > 0 and times[-1] > 0.5


@pytest.mark.parametrize("kind", [MsgType.PIECE, MsgType.REQUEST])
def test_unordered_messages_pass_a_lost_one_and_control_stays_in_order(kind: MsgType) -> None:
    access = {"a": Access(delay_s=0.01, loss=0.3), "b": Access(delay_s=0.02)}
    transport = _lossy(True)
    net, a, b_core = _pair(FakeCore(), rate=1e9, access=access, transport=transport, seed=3)
    pieces = [bytes([kind, i]) * 50 for i in range(20)]
    controls = [bytes([MsgType.HAVE, i]) * 50 for i in range(20)]
    for piece, control in zip(pieces, controls, strict=True):
        net._transmit(a, "b", piece)
        net._transmit(a, "b", control)
    net.queue.run_until(30.0)
    got = [d for _t, _s, d in b_core.received]
    assert net.retransmissions > 0
    assert sorted(got) == sorted(pieces + controls)  # everything arrives
    assert [d for d in got if d[0] == MsgType.HAVE] == controls  # control in order
    assert [d for d in got if d[0] == kind] != pieces  # a lost one was overtaken


def test_loss_based_throughput_matches_the_measured_data_channel() -> None:
    # aiortc over the bed: ~1.0 Mbit/s at 90 ms RTT and 1-1.5% loss, 0.55 at 140 ms and 2%.
    assert 8 * mathis_bytes_per_s(1200, 0.09, 0.0125) / 1e6 == pytest.approx(1.16, abs=0.05)
    assert 8 * mathis_bytes_per_s(1200, 0.14, 0.02) / 1e6 == pytest.approx(0.59, abs=0.05)


def test_the_transport_marks_are_the_drivers() -> None:
    assert RtcConfig().buffer_high_bytes == BUFFER_HIGH_BYTES
    assert RtcConfig().buffer_low_bytes == BUFFER_LOW_BYTES


def test_a_bed_run_is_reproducible_from_its_seed() -> None:
    first = run_bed_scenario(BedScenario(duration_s=6, seed=3))
    second = run_bed_scenario(BedScenario(duration_s=6, seed=3))
    assert first.per_viewer == second.per_viewer
    assert first.figures() == second.figures()
    assert first.events == second.events


def test_simulate_profile_netbed_prints_the_beds_tables(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "simbed.json"
    argv = ["simulate", "--profile", "netbed", "--duration", "8", "--json", str(out)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    for name in ("watch0", "watch3", "page1", "relay0", "continuity mean", "source upload"):
        assert name in text
    doc = json.loads(out.read_text())
    figures = doc["swarm"]["figures"]
    assert set(doc["swarm"]["per_viewer"]) == {f"watch{i}" for i in range(4)} | {"page0", "page1"}
    assert 0.0 <= figures["continuity_min"] <= figures["continuity_mean"] <= 1.0
    assert figures["viewers_reporting"] == 6
    assert 0.5 < figures["source_upload_ratio"] < 3.5  # a 3x uplink, minus headers
    assert doc["transport"]["buffer_high_bytes"] == RtcConfig().buffer_high_bytes


def test_comparison_marks_each_figure_within_its_margin_or_not() -> None:
    def doc(**figures: float) -> dict[str, Any]:
        return {"swarm": {"figures": figures, "per_viewer": {}}}

    bed = doc(continuity_mean=0.5, lag_s_p95=15.0, source_upload_ratio=2.5, peer_share=0.6)
    sims = [
        doc(continuity_mean=0.55, lag_s_p95=20.0, source_upload_ratio=2.6, peer_share=0.7),
        doc(continuity_mean=0.65, lag_s_p95=20.0, source_upload_ratio=2.6, peer_share=0.8),
    ]
    rows = {r["key"]: r for r in compare(bed, sims)}
    assert len(rows) == len(MARGINS)
    assert rows["continuity_mean"]["difference"] == pytest.approx(0.1)
    assert rows["continuity_mean"]["within"]
    assert not rows["lag_s_p95"]["within"]
    assert rows["source_upload_ratio"]["within"]
    assert not rows["peer_share"]["within"]  # 15 points
    assert not rows["startup_s_p50"]["within"]  # missing on both sides: not within
    assert "NO" in comparison_table(list(rows.values()))


def test_the_core_hears_what_the_uplink_delivered_not_what_it_was_handed() -> None:
    core = FakeCore([bytes([1]) * 1000 for _ in range(20)])
    core.serve_to = "b"
    net, a, _b_core = _pair(core)  # 10,000 B/s uplink
    net.pump(a)
    net.queue.run_until(1.1)
    # Four looks a second; 20,000 bytes handed at once, 10,000 a second delivered.
    (at_s, first), *_ = core.delivered
    assert at_s == pytest.approx(0.25) and first == pytest.approx(2_500, abs=1_000)
    at_s, one_s = core.delivered[3]
    assert at_s == pytest.approx(1.0) and one_s == pytest.approx(10_000, abs=1_000)
    assert core.outstanding[3] == pytest.approx(10_000, abs=1_000)
    net.queue.run_until(3.0)
    assert core.delivered[-1][1] == 20_000 and core.outstanding[-1] == 0
