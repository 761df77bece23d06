"""Loss recovery of aiortc's SCTP, tuned to RFC 9260 values: applied when the transport loads.

Why: measured on the namespace bed (benchmarks/sctp_on_bed.py, docs/BENCHMARKS.md "The data
channel alone"), aiortc 1.16's data channel stalls for a second or more after a lost packet
that fast retransmit does not repair, where TCP on the same path does not. Four things, each
kept to what RFC 9260 and browsers do:

- `rto_min_s`: aiortc's SCTP_RTO_MIN is 1 s (RFC 4960's RTO.Min). Every timeout stalls the
  ordered channel for at least that long. Browsers and Linux TCP use 200-400 ms; we use 250 ms.
- `rto_initial_s`: SCTP_RTO_INITIAL is 3 s; RFC 9260 (section 16) lowered RTO.Initial to 1 s.
- `initial_cwnd_bytes`: 3 x 1160 bytes; RFC 9260 section 7.2.1 says min(4 x MTU, max(2 x MTU,
  4380 bytes)), 4380 bytes with aiortc's 1189-byte packets.
- `t3_skips_acked`: on a retransmission timeout aiortc marks every chunk in the sent queue for
  retransmission, those the peer already acknowledged in a gap block included, and sends them
  again from a congestion window of one packet. Only chunks not yet acknowledged are
  outstanding (RFC 9260 sections 1.3 and 6.3.3 E3); the acknowledged ones are left alone (the
  peer keeps them: aiortc never reneges, and a reneging peer would report them missing again).
- `fast_retransmit_once`: aiortc strikes a chunk it already fast-retransmitted on every further
  SACK, so one loss is resent every third packet until its retransmission is acknowledged (an
  RTT later): the copies take the place of new data (measured: 13% of the DATA chunks sent
  through a 2 Mbit/s tbf uplink at 100 ms RTT were retransmissions, 2% with this). RFC 9260
  section 7.2.4: a chunk is fast retransmitted at most once; a chunk already retransmitted
  (fast or by T3) is left to the T3 timer.

- `delayed_sack_s`: aiortc's receiver sends a SACK for every packet that carries data. RFC
  9260 section 6.2 asks for one at least every second packet, and within 500 ms; browsers
  (dcsctp) delay up to 200 ms. Every SACK is a ~90-byte packet on the receiver's uplink: a
  viewer taking in 1 Mbit/s sent ~80 kbit/s of SACKs, a fifth of a 0.4 Mbit/s home uplink,
  and a relay spent a third of its CPU on the SACKs of its viewers (docs/BENCHMARKS.md,
  "Relay capacity"). With it, a SACK goes at once while there is a gap or a duplicate to
  report (fast retransmit needs those without delay), and otherwise delayed_sack_s after the
  first unacknowledged packet, or sooner:
- `sack_after_bytes`: ...once two full packets of user data came (TCP's rule: an ACK for at
  least every second full-sized segment, RFC 5681 section 4.2). A packet with one small
  message (a have, a request: most of what a swarm peer sends) counts for its bytes, not as a
  packet: a 0.5x-stream viewer on the bed received ~300 packets/s, two thirds of them small,
  and a SACK for every second one filled a third of its 0.38 Mbit/s uplink. None: a SACK after
  every second packet.

- `loss_beta`: how much of the congestion window a loss episode keeps. aiortc halves it (Reno);
  CUBIC (RFC 9438, Linux TCP's default) keeps 0.7, and so do we. Under random loss the window
  is set by how much each loss takes away: the data channel held ~1.1 Mbit/s of a 2 Mbit/s
  uplink at 100 ms RTT and 1% loss where TCP held 1.87 (docs/benchmarks-history.md, "The data
  channel alone"); a relay, whose every viewer is one lossy association, carried 27.8-28.9
  Mbit/s to 40 download-only viewers on the bed with it against 11.2 without
  (docs/BENCHMARKS.md, "Relay capacity").

What this does not change: the growth (one 1160-byte packet more per RTT, where Linux TCP grows
1448-byte segments by CUBIC's curve).

Nothing else changes: slow start, congestion avoidance, the decrease on loss (but loss_beta),
one packet after a timeout, Max.Burst 4 and the receiver's 1 MiB window are aiortc's.

Written against aiortc 1.16.0 (`aiortc/rtcsctptransport.py`). On any other version `apply`
logs a warning and leaves aiortc as it is: the patched methods are copies of 1.16.0's with the
changes marked. STREAMER_SCTP_TUNING=stock in the environment turns the tuning off; a base
name with field=value pairs changes single fields (`tuned,sack_after_bytes=none`).

While any tuning is in force, each association also counts its loss recovery (`recovery`):
retransmission timeouts, fast-retransmit episodes and the longest a chunk waited for its
acknowledgement, the figures that tell a lossy path's stall from a busy peer's.

Rules: `apply` and `restore` are idempotent and only touch the names in `_PATCHED`; the
module never imports the rest of the project.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiortc
from aiortc import rtcsctptransport as sctp

logger = logging.getLogger(__name__)

SUPPORTED_AIORTC_VERSIONS = ("1.16.0",)
ENV_VAR = "STREAMER_SCTP_TUNING"
_NEVER_STRUCK = -(1 << 30)
"""Miss count that three more strikes cannot bring to 3 (a chunk already fast-retransmitted)."""


@dataclass(frozen=True)
class SctpTuning:
    """What to change in aiortc's SCTP; STOCK leaves everything as aiortc 1.16.0 has it."""

    rto_min_s: float = 0.25
    rto_initial_s: float = 1.0
    #: None: aiortc's own (3 x USERDATA_MAX_LENGTH).
    initial_cwnd_bytes: int | None = 4380
    t3_skips_acked: bool = True
    fast_retransmit_once: bool = True
    #: None: a SACK for every data packet (aiortc's own).
    delayed_sack_s: float | None = 0.1
    #: None: after every second packet (with delayed_sack_s).
    sack_after_bytes: int | None = 2 * sctp.USERDATA_MAX_LENGTH
    #: The congestion window kept when fast retransmit starts a loss episode (aiortc: half).
    loss_beta: float = 0.7

    def __post_init__(self) -> None:
        if not 0.1 <= self.rto_min_s <= self.rto_initial_s <= sctp.SCTP_RTO_MAX:
            raise ValueError("need 0.1 s <= rto_min_s <= rto_initial_s <= RTO max (60 s)")
        if self.initial_cwnd_bytes is not None and not (
            sctp.USERDATA_MAX_LENGTH <= self.initial_cwnd_bytes <= 4 * sctp.SCTP_MAX_PACKET_LENGTH
        ):
            raise ValueError("initial cwnd must be 1-4 packets (RFC 9260 section 7.2.1)")
        if self.delayed_sack_s is not None and not 0 < self.delayed_sack_s <= 0.5:
            raise ValueError("a SACK may be delayed by at most 500 ms (RFC 9260 section 6.2)")
        if self.sack_after_bytes is not None and not (
            0 < self.sack_after_bytes <= 2 * sctp.USERDATA_MAX_LENGTH
        ):
            raise ValueError("a SACK must go at least every second full packet (RFC 9260 6.2)")
        if not 0.5 <= self.loss_beta < 1.0:
            raise ValueError("loss_beta must be in [0.5, 1): 0.5 halves (Reno), 0.7 is CUBIC's")


STOCK = SctpTuning(
    rto_min_s=1.0,
    rto_initial_s=3.0,
    initial_cwnd_bytes=None,
    t3_skips_acked=False,
    fast_retransmit_once=False,
    delayed_sack_s=None,
    sack_after_bytes=None,
    loss_beta=0.5,
)
TUNED = SctpTuning()
NAMED = {"stock": STOCK, "tuned": TUNED}


def parse_tuning(text: str) -> SctpTuning:
    """'stock', 'tuned', or a base name then field=value pairs: 'stock,rto_min_s=0.25'."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    base = TUNED
    if parts and "=" not in parts[0]:
        name = parts.pop(0)
        if name not in NAMED:
            raise ValueError(f"unknown SCTP tuning {name!r} (stock, tuned)")
        base = NAMED[name]
    changes: dict[str, Any] = {}
    fields = {f.name: f for f in dataclasses.fields(SctpTuning)}
    for part in parts:
        key, _, value = part.partition("=")
        if key not in fields:
            raise ValueError(f"unknown SCTP tuning field {key!r}")
        current = getattr(base, key)
        if isinstance(current, bool):
            changes[key] = value.lower() in ("1", "true", "yes", "on")
        elif key == "initial_cwnd_bytes":
            changes[key] = None if value.lower() == "none" else int(value)
        elif key == "delayed_sack_s":
            changes[key] = None if value.lower() == "none" else float(value)
        elif key == "sack_after_bytes":
            changes[key] = None if value.lower() == "none" else int(value)
        else:
            changes[key] = float(value)
    return dataclasses.replace(base, **changes)


def supported(version: str | None = None) -> bool:
    return (aiortc.__version__ if version is None else version) in SUPPORTED_AIORTC_VERSIONS


_Transport = sctp.RTCSctpTransport
_PATCHED = ("__init__", "_t3_expired", "_receive_sack_chunk", "_send_sack", "_receive_data_chunk")
_ORIGINAL_METHODS: dict[str, Callable[..., Any]] = {
    name: getattr(_Transport, name) for name in _PATCHED
}
_ORIGINAL_CONSTANTS = {"SCTP_RTO_MIN": sctp.SCTP_RTO_MIN, "SCTP_RTO_INITIAL": sctp.SCTP_RTO_INITIAL}
_active: SctpTuning | None = None


def active() -> SctpTuning | None:
    """The tuning in force (None: aiortc as shipped)."""
    return _active


def apply(tuning: SctpTuning | None = None) -> bool:
    """Put `tuning` (default: TUNED, or what STREAMER_SCTP_TUNING says) in force for every
    SCTP association created from now on; False when aiortc's version is not the one this was
    written against (nothing is changed then)."""
    global _active
    if tuning is None:
        text = os.environ.get(ENV_VAR, "").strip()
        tuning = STOCK if text.lower() in ("off", "0") else parse_tuning(text)
    if not supported():
        logger.warning(
            "aiortc %s is not %s: its SCTP is left untuned",
            aiortc.__version__,
            " or ".join(SUPPORTED_AIORTC_VERSIONS),
        )
        return False
    restore()
    if tuning == STOCK:
        return True
    sctp.SCTP_RTO_MIN = tuning.rto_min_s  # type: ignore[assignment]
    sctp.SCTP_RTO_INITIAL = tuning.rto_initial_s
    if tuning.initial_cwnd_bytes is not None:
        _Transport.__init__ = _init_with_cwnd(tuning.initial_cwnd_bytes)  # type: ignore[method-assign]
    if tuning.fast_retransmit_once:
        _Transport._receive_sack_chunk = _receive_sack_chunk  # type: ignore[method-assign]
    if tuning.loss_beta != 0.5:
        inner = _Transport._receive_sack_chunk
        _Transport._receive_sack_chunk = _with_loss_beta(inner, tuning.loss_beta)  # type: ignore[method-assign]
    inner_sack = _Transport._receive_sack_chunk
    _Transport._receive_sack_chunk = _counting_sack(inner_sack)  # type: ignore[method-assign]
    timeout = _t3_expired if tuning.t3_skips_acked else _Transport._t3_expired
    _Transport._t3_expired = _counting_t3(timeout)  # type: ignore[method-assign]
    if tuning.delayed_sack_s is not None:
        delayed = _delayed_send_sack(tuning.delayed_sack_s, tuning.sack_after_bytes)
        _Transport._send_sack = delayed  # type: ignore[method-assign]
        if tuning.sack_after_bytes is not None:
            _Transport._receive_data_chunk = _counting_receive_data_chunk  # type: ignore[method-assign]
    _active = tuning
    return True


def restore() -> None:
    """aiortc as shipped."""
    global _active
    for name, value in _ORIGINAL_CONSTANTS.items():
        setattr(sctp, name, value)
    for name, method in _ORIGINAL_METHODS.items():
        setattr(_Transport, name, method)
    _active = None


def _init_with_cwnd(cwnd_bytes: int) -> Callable[..., None]:
    original = _ORIGINAL_METHODS["__init__"]

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self._cwnd = cwnd_bytes  # changed: aiortc has 3 * USERDATA_MAX_LENGTH

    return __init__


def _delayed_send_sack(delay_s: float, after_bytes: int | None) -> Callable[..., Any]:
    """aiortc's _send_sack (called after every packet that carried data), deferred: it goes at
    once while there is a gap or a duplicate to report, or once after_bytes of user data came
    unacknowledged (after_bytes None: for the second such packet); otherwise delay_s later
    unless that happens first."""
    original = _ORIGINAL_METHODS["_send_sack"]

    async def _send_sack(self: Any) -> None:
        if after_bytes is None:
            due = getattr(self, "_streamer_sack_deferred", False)
        else:
            due = getattr(self, "_streamer_unacked_bytes", 0) >= after_bytes
        if due or self._sack_misordered or self._sack_duplicates:
            _cancel_sack_timer(self)
            self._streamer_sack_deferred = False
            self._streamer_unacked_bytes = 0
            await original(self)
            return
        self._streamer_sack_deferred = True
        if getattr(self, "_streamer_sack_timer", None) is None:
            loop = sctp.asyncio.get_running_loop()
            self._streamer_sack_timer = loop.call_later(delay_s, _sack_timer_fired, self)

    return _send_sack


async def _counting_receive_data_chunk(self: Any, chunk: Any) -> None:
    """aiortc's _receive_data_chunk, counting the user data bytes not yet acknowledged."""
    self._streamer_unacked_bytes = getattr(self, "_streamer_unacked_bytes", 0) + len(
        chunk.user_data
    )
    await _ORIGINAL_METHODS["_receive_data_chunk"](self, chunk)


def _cancel_sack_timer(transport: Any) -> None:
    timer = getattr(transport, "_streamer_sack_timer", None)
    if timer is not None:
        timer.cancel()
    transport._streamer_sack_timer = None


def _sack_timer_fired(transport: Any) -> None:
    transport._streamer_sack_timer = None
    if not getattr(transport, "_streamer_sack_deferred", False):
        return
    transport._streamer_sack_deferred = False
    transport._streamer_unacked_bytes = 0
    if transport._sack_needed:
        task = sctp.asyncio.ensure_future(_ORIGINAL_METHODS["_send_sack"](transport))
        task.add_done_callback(_ignore_closed)


def _ignore_closed(task: Any) -> None:
    """A delayed SACK of an association that closed meanwhile has nowhere to go."""
    if not task.cancelled():
        task.exception()


def recovery(transport: Any) -> dict[str, Any] | None:
    """One association's loss recovery so far, as the sender saw it (None when no tuning is in
    force, or it has sent nothing): retransmission timeouts, fast-retransmit episodes, the
    longest a chunk waited from its first sending to its cumulative acknowledgement, and the
    smoothed RTT, RTO and congestion window now."""
    if _active is None or not hasattr(transport, "_streamer_longest_ack_s"):
        return None
    srtt_s = getattr(transport, "_srtt", None)
    return {
        "t3_timeouts": getattr(transport, "_streamer_t3_timeouts", 0),
        "loss_episodes": getattr(transport, "_streamer_loss_episodes", 0),
        "longest_ack_ms": round(transport._streamer_longest_ack_s * 1000, 1),
        "srtt_ms": None if srtt_s is None else round(srtt_s * 1000, 1),
        "rto_ms": round(transport._rto * 1000, 1),
        "cwnd_bytes": transport._cwnd,
    }


def combined(figures: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Several associations' recovery (from `recovery`): the counts summed, the longest wait."""
    if not figures:
        return None
    return {
        "associations": sum(f.get("associations", 1) for f in figures),
        "t3_timeouts": sum(f["t3_timeouts"] for f in figures),
        "loss_episodes": sum(f["loss_episodes"] for f in figures),
        "longest_ack_ms": max(f["longest_ack_ms"] for f in figures),
    }


def _counting_sack(inner: Callable[..., Any]) -> Callable[..., Any]:
    """inner (a _receive_sack_chunk), counting loss episodes and the oldest chunk's wait."""

    async def _receive_sack_chunk(self: Any, chunk: Any) -> None:
        queue = self._sent_queue
        if queue and sctp.uint32_gte(chunk.cumulative_tsn, queue[0].tsn):
            # (the first sending's time: aiortc keeps it through retransmissions)
            waited_s = sctp.time.time() - queue[0]._sent_time
            self._streamer_longest_ack_s = max(
                getattr(self, "_streamer_longest_ack_s", 0.0), waited_s
            )
        in_recovery = self._fast_recovery_exit is not None
        await inner(self, chunk)
        if not in_recovery and self._fast_recovery_exit is not None:
            self._streamer_loss_episodes = getattr(self, "_streamer_loss_episodes", 0) + 1

    return _receive_sack_chunk


def _counting_t3(inner: Callable[..., None]) -> Callable[..., None]:
    def _t3_expired(self: Any) -> None:
        self._streamer_t3_timeouts = getattr(self, "_streamer_t3_timeouts", 0) + 1
        inner(self)

    return _t3_expired


def _t3_expired(self: Any) -> None:
    """aiortc 1.16.0's RTCSctpTransport._t3_expired, except that chunks acknowledged in a gap
    block are not marked for retransmission (counted by _counting_t3 around it)."""
    self._t3_handle = None
    for chunk in self._sent_queue:
        if chunk._acked:  # changed: the peer holds it; it is not outstanding
            continue
        if not self._maybe_abandon(chunk):
            chunk._retransmit = True
        self._flight_size_decrease(chunk)
    self._update_advanced_peer_ack_point()
    self._fast_recovery_exit = None
    self._partial_bytes_acked = 0
    self._ssthresh = max(self._cwnd // 2, 4 * sctp.USERDATA_MAX_LENGTH)
    self._cwnd = sctp.USERDATA_MAX_LENGTH
    sctp.asyncio.ensure_future(self._transmit())


async def _receive_sack_chunk(self: Any, chunk: Any) -> None:
    """aiortc 1.16.0's method, after taking chunks already retransmitted out of fast retransmit
    (their miss count can no longer reach 3, so only T3 resends them)."""
    for sent in self._sent_queue:
        if sent._sent_count > 1 and not sent._retransmit:
            sent._misses = _NEVER_STRUCK
    await _ORIGINAL_METHODS["_receive_sack_chunk"](self, chunk)


def _with_loss_beta(inner: Callable[..., Any], beta: float) -> Callable[..., Any]:
    """inner (a _receive_sack_chunk), except that a loss episode it starts keeps beta of the
    congestion window instead of half (RFC 9438's multiplicative decrease is 0.7)."""

    async def _receive_sack_chunk(self: Any, chunk: Any) -> None:
        cwnd_before = self._cwnd
        in_recovery = self._fast_recovery_exit is not None
        await inner(self, chunk)
        if not in_recovery and self._fast_recovery_exit is not None:
            self._ssthresh = max(int(cwnd_before * beta), 4 * sctp.USERDATA_MAX_LENGTH)
            self._cwnd = self._ssthresh  # changed: aiortc has half of it

    return _receive_sack_chunk
