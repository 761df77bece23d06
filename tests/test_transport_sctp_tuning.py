"""streamer.transport.sctp_tuning: what it changes in aiortc, the version check, its limits."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from aiortc import rtcsctptransport as sctp

from streamer.transport import sctp_tuning
from streamer.transport.sctp_tuning import STOCK, TUNED, SctpTuning


@pytest.fixture(autouse=True)
def _back_to_default() -> Iterator[None]:
    yield
    sctp_tuning.apply()


def test_the_transport_applies_the_tuning_on_import() -> None:
    import streamer.transport.rtc  # noqa: F401

    assert sctp_tuning.active() == TUNED
    assert TUNED.rto_min_s == sctp.SCTP_RTO_MIN


def test_apply_and_restore() -> None:
    assert sctp_tuning.apply(TUNED)
    assert sctp.SCTP_RTO_MIN == 0.25 and sctp.SCTP_RTO_INITIAL == 1.0
    assert sctp.RTCSctpTransport._t3_expired is not sctp_tuning._ORIGINAL_METHODS["_t3_expired"]
    sctp_tuning.restore()
    assert sctp_tuning.active() is None
    assert sctp.SCTP_RTO_MIN == 1 and sctp.SCTP_RTO_INITIAL == 3.0
    for name, method in sctp_tuning._ORIGINAL_METHODS.items():
        assert getattr(sctp.RTCSctpTransport, name) is method
    assert sctp_tuning.apply(STOCK) and sctp_tuning.active() is None


def test_environment_turns_it_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(sctp_tuning.ENV_VAR, "stock")
    assert sctp_tuning.apply()
    assert sctp_tuning.active() is None and sctp.SCTP_RTO_MIN == 1


def test_environment_changes_single_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(sctp_tuning.ENV_VAR, "tuned,sack_after_bytes=none")
    assert sctp_tuning.apply()
    active = sctp_tuning.active()
    assert active is not None and active.sack_after_bytes is None and active.rto_min_s == 0.25


def test_other_aiortc_versions_are_left_alone(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    sctp_tuning.restore()
    monkeypatch.setattr(sctp_tuning.aiortc, "__version__", "1.17.0")
    with caplog.at_level(logging.WARNING):
        assert not sctp_tuning.apply(TUNED)
    assert "1.17.0" in caplog.text
    assert sctp_tuning.active() is None and sctp.SCTP_RTO_MIN == 1
    assert sctp_tuning.supported("1.16.0") and not sctp_tuning.supported("1.15.0")


def test_values_stay_rfc_reasonable() -> None:
    assert 0.2 <= TUNED.rto_min_s <= 0.4  # browsers and Linux TCP: 200-400 ms
    assert TUNED.rto_initial_s == 1.0  # RFC 9260 RTO.Initial
    mtu = sctp.SCTP_MAX_PACKET_LENGTH
    assert TUNED.initial_cwnd_bytes == min(4 * mtu, max(2 * mtu, 4380))  # RFC 9260 7.2.1
    assert TUNED.loss_beta == 0.7 and STOCK.loss_beta == 0.5  # CUBIC's decrease; aiortc halves
    with pytest.raises(ValueError):
        SctpTuning(rto_min_s=0.05)
    with pytest.raises(ValueError):
        SctpTuning(initial_cwnd_bytes=10 * mtu)


def test_parse_tuning() -> None:
    assert sctp_tuning.parse_tuning("stock") == STOCK
    assert sctp_tuning.parse_tuning("tuned") == TUNED
    got = sctp_tuning.parse_tuning("stock,rto_min_s=0.3,t3_skips_acked=1,initial_cwnd_bytes=none")
    assert got.rto_min_s == 0.3 and got.t3_skips_acked and got.initial_cwnd_bytes is None
    assert not got.fast_retransmit_once
    with pytest.raises(ValueError):
        sctp_tuning.parse_tuning("fast")
    with pytest.raises(ValueError):
        sctp_tuning.parse_tuning("tuned,cwnd=1")


def _chunk(tsn: int, *, acked: bool = False, sent_count: int = 1) -> Any:
    return SimpleNamespace(
        tsn=tsn, _acked=acked, _retransmit=False, _sent_count=sent_count, _misses=0,
        _abandoned=False, _max_retransmits=None, _expiry=None, _in_flight=not acked,
        _book_size=1000,
    )  # fmt: skip


def _fake_transport(chunks: list[Any]) -> Any:
    transport: Any = SimpleNamespace(
        _t3_handle=object(), _sent_queue=chunks, _cwnd=20_000, _ssthresh=0,
        _fast_recovery_exit=1, _partial_bytes_acked=5, _flight_size=0,
    )  # fmt: skip
    transport._maybe_abandon = lambda chunk: False
    transport._flight_size_decrease = lambda chunk: None
    transport._update_advanced_peer_ack_point = lambda: None

    async def transmit() -> None:
        return None

    transport._transmit = transmit
    return transport


async def test_a_timeout_resends_only_what_the_peer_has_not_acknowledged() -> None:
    chunks = [_chunk(1), _chunk(2, acked=True), _chunk(3)]
    transport = _fake_transport(chunks)
    sctp.RTCSctpTransport._t3_expired(transport)  # as tuned: counted, acknowledged ones kept
    await asyncio.sleep(0)
    assert [c._retransmit for c in chunks] == [True, False, True]
    assert transport._cwnd == sctp.USERDATA_MAX_LENGTH  # one packet after a timeout, as RFC
    assert transport._ssthresh == 10_000 and transport._fast_recovery_exit is None


async def test_a_retransmitted_chunk_is_not_fast_retransmitted_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    chunks = [_chunk(1, sent_count=2), _chunk(2), _chunk(3, sent_count=3)]
    chunks[2]._retransmit = True  # already due again (by T3): left as it is
    seen: list[list[int]] = []

    async def original(self: Any, chunk: Any) -> None:
        seen.append([c._misses for c in self._sent_queue])

    monkeypatch.setitem(sctp_tuning._ORIGINAL_METHODS, "_receive_sack_chunk", original)
    await sctp_tuning._receive_sack_chunk(_fake_transport(chunks), object())
    assert seen == [[sctp_tuning._NEVER_STRUCK, 0, 0]]
    assert sctp_tuning._NEVER_STRUCK + 1000 < 3


async def test_a_loss_episode_keeps_loss_beta_of_the_window() -> None:
    async def halving(self: Any, chunk: Any) -> None:
        """What aiortc does when a SACK reports a third miss: half the window, fast recovery."""
        self._ssthresh = self._cwnd = self._cwnd // 2
        self._fast_recovery_exit = 9

    transport = _fake_transport([_chunk(1)])
    transport._fast_recovery_exit = None
    await sctp_tuning._with_loss_beta(halving, 0.7)(transport, object())
    assert transport._cwnd == transport._ssthresh == 14_000  # 0.7 of 20,000, not 10,000
    # Within the episode (its exit set already), the window is left to aiortc.
    transport._cwnd = 12_000
    await sctp_tuning._with_loss_beta(halving, 0.7)(transport, object())
    assert transport._cwnd == 6_000
    with pytest.raises(ValueError):
        SctpTuning(loss_beta=0.4)
    assert sctp_tuning.parse_tuning("tuned,loss_beta=0.5").loss_beta == 0.5


async def test_new_associations_start_with_the_rfc_window() -> None:
    from aiortc import RTCCertificate, RTCDtlsTransport, RTCIceGatherer, RTCIceTransport

    sctp_tuning.apply(TUNED)
    dtls = RTCDtlsTransport(
        RTCIceTransport(RTCIceGatherer()), [RTCCertificate.generateCertificate()]
    )
    assert sctp.RTCSctpTransport(dtls)._cwnd == 4380
    sctp_tuning.restore()
    assert sctp.RTCSctpTransport(dtls)._cwnd == 3 * sctp.USERDATA_MAX_LENGTH


class _Receiver:
    """What the delayed SACK touches of an association: its gaps and duplicates to report."""

    def __init__(self) -> None:
        self._sack_misordered: set[int] = set()
        self._sack_duplicates: list[int] = []
        self._sack_needed = True
        self.sacks = 0


@pytest.fixture
def counted_sacks(monkeypatch: pytest.MonkeyPatch) -> Any:
    async def send_sack(receiver: _Receiver) -> None:
        receiver.sacks += 1
        receiver._sack_needed = False

    monkeypatch.setitem(sctp_tuning._ORIGINAL_METHODS, "_send_sack", send_sack)
    return sctp_tuning._delayed_send_sack(0.05, None)


async def test_a_sack_goes_for_every_second_data_packet(counted_sacks: Any) -> None:
    receiver = _Receiver()
    await counted_sacks(receiver)
    assert receiver.sacks == 0
    await counted_sacks(receiver)
    assert receiver.sacks == 1
    await asyncio.sleep(0.08)
    assert receiver.sacks == 1  # the timer of the first was cancelled


async def test_small_packets_count_for_their_bytes_full_ones_as_packets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def send_sack(receiver: _Receiver) -> None:
        receiver.sacks += 1

    async def receive_data_chunk(receiver: _Receiver, chunk: Any) -> None:
        receiver._sack_needed = True

    monkeypatch.setitem(sctp_tuning._ORIGINAL_METHODS, "_send_sack", send_sack)
    monkeypatch.setitem(sctp_tuning._ORIGINAL_METHODS, "_receive_data_chunk", receive_data_chunk)
    full = sctp.USERDATA_MAX_LENGTH
    send = sctp_tuning._delayed_send_sack(0.05, 2 * full)
    receiver = _Receiver()

    async def packet(size_bytes: int) -> None:
        chunk = SimpleNamespace(user_data=bytes(size_bytes))
        await sctp_tuning._counting_receive_data_chunk(receiver, chunk)
        await send(receiver)

    for _ in range(10):  # ten haves and requests: no SACK until the delay
        await packet(40)
    assert receiver.sacks == 0
    await packet(full)
    await packet(full)  # two full packets (and the small ones): at once
    assert receiver.sacks == 1
    await packet(full)
    assert receiver.sacks == 1
    await asyncio.sleep(0.08)  # a lone full packet: after the delay
    assert receiver.sacks == 2
    await packet(40)
    await asyncio.sleep(0.08)
    assert receiver.sacks == 3


async def test_a_lone_data_packet_is_acknowledged_after_the_delay(counted_sacks: Any) -> None:
    receiver = _Receiver()
    await counted_sacks(receiver)
    assert receiver.sacks == 0
    await asyncio.sleep(0.08)
    assert receiver.sacks == 1


async def test_a_gap_is_reported_at_once(counted_sacks: Any) -> None:
    receiver = _Receiver()
    receiver._sack_misordered.add(7)
    await counted_sacks(receiver)
    assert receiver.sacks == 1


def test_the_tuning_delays_sacks_within_rfc_9260() -> None:
    assert TUNED.delayed_sack_s is not None and 0 < TUNED.delayed_sack_s <= 0.5
    assert STOCK.delayed_sack_s is None
    with pytest.raises(ValueError):
        SctpTuning(delayed_sack_s=0.6)
    assert sctp_tuning.parse_tuning("tuned,delayed_sack_s=none").delayed_sack_s is None
    assert sctp_tuning.parse_tuning("tuned,sack_after_bytes=none").sack_after_bytes is None
    assert STOCK.sack_after_bytes is None
    with pytest.raises(ValueError):
        SctpTuning(sack_after_bytes=3 * sctp.USERDATA_MAX_LENGTH)


async def test_recovery_counts_timeouts_loss_episodes_and_the_longest_wait() -> None:
    assert sctp_tuning.apply(TUNED)
    transport = _fake_transport([_chunk(5)])
    transport._sent_queue = deque(transport._sent_queue)
    transport._sent_queue[0]._sent_time = sctp.time.time() - 2.0
    transport._fast_recovery_exit, transport._rto, transport._srtt = None, 0.3, 0.12
    assert sctp_tuning.recovery(transport) is None  # nothing acknowledged yet

    async def acking(self: Any, chunk: Any) -> None:
        """aiortc's SACK handling, reduced to: the cumulative ack pops, a gap starts recovery."""
        self._sent_queue.clear()
        self._fast_recovery_exit = 9 if chunk.gaps else self._fast_recovery_exit

    counting = sctp_tuning._counting_sack(acking)
    await counting(transport, SimpleNamespace(cumulative_tsn=5, gaps=[(2, 2)]))
    await counting(transport, SimpleNamespace(cumulative_tsn=6, gaps=[(1, 1)]))  # same episode
    sctp.RTCSctpTransport._t3_expired(transport)
    await asyncio.sleep(0)
    got = sctp_tuning.recovery(transport)
    assert got is not None
    assert got["t3_timeouts"] == 1 and got["loss_episodes"] == 1
    assert 2000 <= got["longest_ack_ms"] < 3000
    assert got["srtt_ms"] == 120.0 and got["rto_ms"] == 300.0
    assert got["cwnd_bytes"] == sctp.USERDATA_MAX_LENGTH
    both = sctp_tuning.combined([got, {**got, "longest_ack_ms": 5.0, "associations": 3}])
    longest_ms = got["longest_ack_ms"]
    assert both == {
        "associations": 4, "t3_timeouts": 2, "loss_episodes": 2, "longest_ack_ms": longest_ms
    }  # fmt: skip
    assert sctp_tuning.combined([]) is None
    sctp_tuning.restore()
    assert sctp_tuning.recovery(transport) is None  # aiortc as shipped counts nothing


def test_stock_timeouts_are_counted_too(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Any] = []
    monkeypatch.setitem(sctp_tuning._ORIGINAL_METHODS, "_t3_expired", calls.append)
    sctp_tuning.restore()
    assert sctp_tuning.apply(SctpTuning(t3_skips_acked=False))
    transport = SimpleNamespace()
    sctp.RTCSctpTransport._t3_expired(transport)
    assert calls == [transport] and transport._streamer_t3_timeouts == 1
