"""How much data may wait in the transport's send buffers, all links together (pure: `now` is
passed in).

Why: a data channel takes whatever it is given and queues it. On a home uplink of 0.4-3 Mbit/s a
megabyte queued is seconds in which every control message of ours (requests, haves) waits
behind it on the channel's one ordered stream, and in which the core can neither put an urgent
piece first nor take back one that was cancelled. The gate lets data through only while the
bytes queued in all links together are under a window of `target_queue_s` of the uplink's
measured drain rate (a piece message at least); the rest waits in the core, where the most
urgent request is served first and a cancel removes it. Control messages never wait for it.

The drain rate is measured, never configured: the bytes that left the buffers per second, over
intervals in which the buffers never ran dry (an EWMA). An interval in which they ran dry says
nothing of the uplink: the transport had room for more, and what it took at once may still sit
in its congestion window rather than on the wire. The browser page has the same gate
(web/static/js/uplinkgate.js; both run tests/scenarios/uplink_gate.json).
"""

from __future__ import annotations

from dataclasses import dataclass

FLIGHT_WINDOW_S = 0.4
"""Bytes handed to the transport and not yet acknowledged, all links together: at most this long
at the uplink's delivered rate (see flight_window_bytes)."""
MIN_FLIGHT_BYTES = 18 * 1024
"""...but two piece messages at least."""
INITIAL_FLIGHT_BYTES = 32 * 1024
"""Before the uplink has delivered under demand for a second."""
GATE_POLL_S = 0.02
"""How often links held back by the gate try again (the transport has no event for "all links
together drained below a level"; the page's app.js polls as often)."""
UPLINK_SAMPLE_S = 0.25
"""How often a driver tells its core what the uplink delivered (SwarmPeer.uplink_delivered)."""


@dataclass(frozen=True, slots=True)
class UplinkGateConfig:
    target_queue_s: float = 0.1
    """Data queued in the transport: this long at the measured drain rate."""
    min_window_bytes: int = 9 * 1024
    """...but room for one piece message (8 KiB of payload and its header) at least."""
    initial_window_bytes: int = 32 * 1024
    """Before a drain rate is measured."""
    max_window_bytes: int = 1024 * 1024
    sample_s: float = 0.1
    """Drain rate samples span at least this long."""
    alpha: float = 0.25
    """Weight of a new sample in the drain rate (EWMA)."""


def flight_window_bytes(delivered_bytes_per_s: float | None) -> int:
    """How many bytes all links together may hold unacknowledged (queued in the transport or in
    flight), from the best rate the uplink delivered under demand (SwarmPeer's
    uplink_delivered_bytes_per_s).

    Why: each SCTP association's congestion window grows until a packet is lost, so several
    links together handed all they take overfill a home router's uplink queue. On the test bed
    (uplink queues of 200 ms) a 1x-stream viewer that uploaded two thirds of its uplink on
    average had ~200 loss recovery episodes a minute, against ~25 its links' random loss
    explains, and its pieces and its own requests waited behind those recoveries (netbed
    --hop-trace: 0.50 / 1.08 / 2.16 s p50 / p90 / p99 on the way for its pieces). Held back
    here instead, data waits in the core's upload queue, where the most urgent request goes
    first. Python nodes only: a browser shows what its channels queue, not what is in flight.
    The window is counted in time at the delivered rate, so it grows with what the uplink is
    seen to carry, and it is over 2x the bed's longest round trip, so one link alone can still
    fill the uplink."""
    if delivered_bytes_per_s is None:
        return INITIAL_FLIGHT_BYTES
    return max(MIN_FLIGHT_BYTES, int(delivered_bytes_per_s * FLIGHT_WINDOW_S))


class UplinkGate:
    def __init__(self, config: UplinkGateConfig | None = None) -> None:
        self.config = config or UplinkGateConfig()
        self.drain_bytes_per_s: float | None = None
        self._sample_start_s: float | None = None
        self._start_buffered = 0
        self._start_sent = 0
        self._ran_dry = False

    @property
    def window_bytes(self) -> int:
        cfg = self.config
        if self.drain_bytes_per_s is None:
            return cfg.initial_window_bytes
        window = int(self.drain_bytes_per_s * cfg.target_queue_s)
        return max(cfg.min_window_bytes, min(cfg.max_window_bytes, window))

    def has_room(self, buffered_bytes: int) -> bool:
        """May another data message be handed to the transport now?"""
        return buffered_bytes < self.window_bytes

    def observe(self, now: float, buffered_bytes: int, sent_bytes: int) -> None:
        """The bytes queued in the transport now and the bytes ever handed to it (data and
        control), all links together."""
        if self._sample_start_s is None:
            self._start_sample(now, buffered_bytes, sent_bytes)
            return
        if buffered_bytes == 0:
            self._ran_dry = True
        elapsed_s = now - self._sample_start_s
        if elapsed_s < self.config.sample_s:
            return
        if not self._ran_dry:
            drained = self._start_buffered + (sent_bytes - self._start_sent) - buffered_bytes
            sample = max(0.0, drained / elapsed_s)
            old = self.drain_bytes_per_s
            if old is None:
                self.drain_bytes_per_s = sample if sample > 0 else None
            else:
                self.drain_bytes_per_s = old + self.config.alpha * (sample - old)
        self._start_sample(now, buffered_bytes, sent_bytes)

    def _start_sample(self, now: float, buffered_bytes: int, sent_bytes: int) -> None:
        self._sample_start_s = now
        self._start_buffered = buffered_bytes
        self._start_sent = sent_bytes
        self._ran_dry = buffered_bytes == 0
