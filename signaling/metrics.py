"""Counters for /metrics, rendered in the Prometheus text exposition format (version 0.0.4).

Label values are only ever our own message types and error codes (an unknown client `type` is
counted as "unknown"), so a hostile client cannot grow the label set.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from signaling.channels import Registry

KNOWN_IN_TYPES = frozenset({"join", "publish", "signal", "get_peers", "status", "end", "ping"})


@dataclass
class Metrics:
    messages_in: Counter[str] = field(default_factory=Counter)
    messages_out: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    bytes_in: int = 0
    bytes_out: int = 0
    connections_total: int = 0
    dropped_slow_total: int = 0

    def count_in(self, message_type: str | None, size_bytes: int) -> None:
        label = message_type if message_type in KNOWN_IN_TYPES else "unknown"
        self.messages_in[label] += 1
        self.bytes_in += size_bytes

    def count_out(self, message_type: str, size_bytes: int) -> None:
        self.messages_out[message_type] += 1
        self.bytes_out += size_bytes

    def render(self, registry: Registry, open_connections: int) -> str:
        lines: list[str] = []
        peers_by_role: Counter[str] = Counter()
        for channel in registry.channels.values():
            peers_by_role.update(channel.role_counts)
        _gauge(lines, "signaling_peers", "Joined peers by role.", "role", peers_by_role.items())
        _single(lines, "signaling_channels", "gauge", "Channels held.", len(registry.channels))
        _single(
            lines,
            "signaling_connections",
            "gauge",
            "Open WebSocket connections.",
            open_connections,
        )
        _single(
            lines,
            "signaling_connections_total",
            "counter",
            "WebSocket connections accepted.",
            self.connections_total,
        )
        _counter(
            lines,
            "signaling_messages_in_total",
            "Messages received by type.",
            "type",
            self.messages_in.items(),
        )
        _counter(
            lines,
            "signaling_messages_out_total",
            "Messages sent by type.",
            "type",
            self.messages_out.items(),
        )
        _counter(
            lines, "signaling_errors_total", "Errors sent by code.", "code", self.errors.items()
        )
        _single(lines, "signaling_bytes_in_total", "counter", "Bytes received.", self.bytes_in)
        _single(lines, "signaling_bytes_out_total", "counter", "Bytes sent.", self.bytes_out)
        _single(
            lines,
            "signaling_dropped_slow_total",
            "counter",
            "Connections dropped for reading too slowly.",
            self.dropped_slow_total,
        )
        return "\n".join(lines) + "\n"


def _single(lines: list[str], name: str, kind: str, help_text: str, value: float) -> None:
    lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", f"{name} {value}"]


def _labelled(
    lines: list[str],
    name: str,
    kind: str,
    help_text: str,
    label: str,
    items: Iterable[tuple[str, int]],
) -> None:
    lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    for value_label, value in sorted(items):
        lines.append(f'{name}{{{label}="{value_label}"}} {value}')


def _gauge(
    lines: list[str], name: str, help_text: str, label: str, items: Iterable[tuple[str, int]]
) -> None:
    _labelled(lines, name, "gauge", help_text, label, items)


def _counter(
    lines: list[str], name: str, help_text: str, label: str, items: Iterable[tuple[str, int]]
) -> None:
    _labelled(lines, name, "counter", help_text, label, items)
