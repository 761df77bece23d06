"""What /metrics exposes, kept in prometheus_client objects (one CollectorRegistry per server, so
several servers in one process, as in the tests, never share counters).

Label values are only ever our own message types, roles and error codes (an unknown client `type`
is counted as "unknown"), so a hostile client cannot grow the label set.
"""

from __future__ import annotations

from collections.abc import Mapping

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from signaling_wire import ROLES

KNOWN_IN_TYPES = frozenset({"join", "publish", "signal", "get_peers", "status", "end", "ping"})
#: Join and signal latencies are milliseconds on a healthy server; the tail is what matters.
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

# The `_created` timestamps double the output and no dashboard of ours uses them.
prometheus_client.disable_created_metrics()


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.peers = Gauge("signaling_peers", "Joined peers by role.", ["role"], registry=r)
        self.channels = Gauge("signaling_channels", "Channels held.", registry=r)
        self.connections = Gauge("signaling_connections", "Open WebSocket connections.", registry=r)
        # Not `signaling_connections_total`: prometheus_client reserves it for the gauge above.
        self.connections_accepted = Counter(
            "signaling_connections_accepted", "WebSocket connections accepted.", registry=r
        )
        self.messages_in = Counter(
            "signaling_messages_in", "Messages received by type.", ["type"], registry=r
        )
        self.messages_out = Counter(
            "signaling_messages_out", "Messages sent by type.", ["type"], registry=r
        )
        self.errors = Counter("signaling_errors", "Errors sent by code.", ["code"], registry=r)
        self.bytes_in = Counter("signaling_bytes_in", "Bytes received.", registry=r)
        self.bytes_out = Counter("signaling_bytes_out", "Bytes sent.", registry=r)
        self.dropped_slow = Counter(
            "signaling_dropped_slow", "Connections dropped for reading too slowly.", registry=r
        )
        self.join_seconds = Histogram(
            "signaling_join_seconds",
            "A join message received -> its welcome queued (cluster look-ups included).",
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.signal_seconds = Histogram(
            "signaling_signal_delivery_seconds",
            "A signal received -> queued for its target, on the target's server (across "
            "processes: wall clocks of the two servers).",
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )

    def count_in(self, message_type: str | None, size_bytes: int) -> None:
        label = message_type if message_type in KNOWN_IN_TYPES else "unknown"
        self.messages_in.labels(label).inc()
        self.bytes_in.inc(size_bytes)

    def count_out(self, message_type: str, size_bytes: int) -> None:
        self.messages_out.labels(message_type).inc()
        self.bytes_out.inc(size_bytes)

    def count_error(self, code: str) -> None:
        self.errors.labels(code).inc()

    def value(self, name: str, labels: Mapping[str, str] | None = None) -> float:
        """One sample's value (0 when never set): for tests and the benchmark."""
        return self.registry.get_sample_value(name, dict(labels or {})) or 0.0

    def render(
        self, peers_by_role: Mapping[str, int], channel_count: int, open_connections: int
    ) -> bytes:
        """The Prometheus text; the gauges are set from the caller's figures first."""
        for role in ROLES:
            self.peers.labels(role).set(peers_by_role.get(role, 0))
        self.channels.set(channel_count)
        self.connections.set(open_connections)
        return prometheus_client.generate_latest(self.registry)


CONTENT_TYPE = prometheus_client.CONTENT_TYPE_LATEST
