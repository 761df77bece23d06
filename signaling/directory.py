"""Who is where: the one interface between the socket code (app.py) and the channels' state.

Two implementations: `LocalDirectory` (this module: one process, everything in the pure
`Registry`) and `RedisDirectory` (signaling.redis_directory: many processes sharing channels
through Redis). The app never asks which one it has. A directory delivers every server message
through `Events.deliver`, which sends only to this process's sockets; a directory that spans
processes routes the rest itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from signaling.channels import LeaveResult, Registry
from signaling.protocol import GetPeers, Join, Status
from signaling.tracker import Candidate


@dataclass(frozen=True)
class Events:
    """What a directory may ask of the app."""

    #: Queue `message` for those of `peer_ids` connected to this process (others are ignored).
    deliver: Callable[[Iterable[str], dict[str, Any]], None]
    #: This process's broadcaster `peer_id` was replaced by a newer join with its secret (the
    #: registry already forgot it): close its socket with `replaced`.
    replaced: Callable[[str], None]
    #: A signal was queued for its target this many seconds after its sender's server got it.
    signal_delivered: Callable[[float], None]


@dataclass(frozen=True)
class Joined:
    channel: str
    media: dict[str, Any] | None
    candidates: list[Candidate]


@dataclass(frozen=True)
class Totals:
    """Figures for /metrics and /healthz (cluster-wide on a cluster)."""

    peers_by_role: dict[str, int] = field(default_factory=dict)
    channels: int = 0


class Directory(Protocol):
    #: This process's peers and channels.
    registry: Registry

    async def start(self, events: Events) -> None: ...
    async def close(self) -> None: ...
    async def join(self, message: Join, peer_id: str, now: float, count: int) -> Joined:
        """Admit `peer_id` (ProtocolError if refused, nothing changed) and pick candidates."""
        ...

    async def leave(self, peer_id: str, now: float, graceful: bool = True) -> None:
        """`peer_id`'s socket closed. `graceful` (it said goodbye): its neighbours hear now;
        otherwise only after the grace period, if it has not joined again by then."""
        ...

    async def expire(self, now: float) -> None:
        """Send `peer_left` for departed peers whose grace period is over."""
        ...

    async def signal(self, from_id: str, to_id: str, data: dict[str, Any]) -> None:
        """Deliver a signal to `to_id` wherever it is; ProtocolError if not in the channel."""
        ...

    async def candidates(self, peer_id: str, request: GetPeers) -> list[Candidate]: ...
    async def status(self, peer_id: str, status: Status) -> None: ...
    async def publish(self, peer_id: str, media: dict[str, Any], now: float) -> None: ...
    async def end(self, peer_id: str, now: float) -> None: ...
    async def sweep(self, now: float) -> None: ...
    async def channel_summaries(self, now: float) -> list[dict[str, Any]]:
        """Summaries of owned channels (pages, /api)."""
        ...

    async def channel_summary(self, name: str, now: float) -> dict[str, Any] | None:
        """Any channel with peers or an owner (a waiting room too); None if unknown."""
        ...

    async def totals(self) -> Totals: ...
    async def admit_address(self, address: str, cap: int) -> bool:
        """Count one more socket from `address` across the cluster; False (nothing counted)
        if the cluster already holds `cap`. One process counts alone (signaling.iplimits)."""
        ...

    async def release_address(self, address: str) -> None:
        """A socket that admit_address counted closed."""
        ...

    async def admit_channel(self, address: str, channel: str, cap: int) -> bool:
        """Count one more peer of `address` in `channel` across the cluster; False (nothing
        counted) if the address is not in `channel` and already in `cap` channels. One process
        counts alone (signaling.iplimits)."""
        ...

    async def release_channel(self, address: str, channel: str) -> None:
        """A peer that admit_channel counted left its channel (its socket closed)."""
        ...


class LocalDirectory:
    """One process: the registry knows every peer; delivery is a direct call."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._events: Events | None = None

    @property
    def events(self) -> Events:
        assert self._events is not None, "start() first"
        return self._events

    async def start(self, events: Events) -> None:
        self._events = events

    async def close(self) -> None:
        pass

    async def admit_address(self, address: str, cap: int) -> bool:
        return True  # signaling.iplimits counts this process's sockets, which are all of them

    async def release_address(self, address: str) -> None:
        pass

    async def admit_channel(self, address: str, channel: str, cap: int) -> bool:
        return True  # signaling.iplimits counts this process's peers, which are all of them

    async def release_channel(self, address: str, channel: str) -> None:
        pass

    async def join(self, message: Join, peer_id: str, now: float, count: int) -> Joined:
        result = self.registry.join(message, peer_id, now)
        if result.replaced is not None:
            self.replace_done(result.replaced)
        channel = result.channel
        candidates = channel.tracker.select(peer_id, count, self.registry.rng)
        return Joined(channel.name, channel.media, candidates)

    def replace_done(self, replaced: LeaveResult) -> None:
        """A same-secret join took over from a connected broadcaster: tell its contacts."""
        self.events.deliver(replaced.notify, {"type": "peer_left", "peer_id": replaced.peer_id})
        self.events.replaced(replaced.peer_id)

    async def leave(self, peer_id: str, now: float, graceful: bool = True) -> None:
        left = self.registry.leave(peer_id, now, graceful=graceful)
        if left is None:
            return
        self.events.deliver(left.notify, {"type": "peer_left", "peer_id": peer_id})
        if left.broadcast_ended:
            channel = self.registry.channels.get(left.channel)
            if channel is not None:
                self.events.deliver(
                    list(channel.peers), {"type": "broadcast_ended", "reason": "broadcaster_left"}
                )

    async def signal(self, from_id: str, to_id: str, data: dict[str, Any]) -> None:
        received_at = time.monotonic()
        self.registry.record_signal(from_id, to_id)
        self.events.deliver([to_id], {"type": "signal", "from": from_id, "data": data})
        self.events.signal_delivered(time.monotonic() - received_at)

    async def candidates(self, peer_id: str, request: GetPeers) -> list[Candidate]:
        return self.registry.candidates(peer_id, request)

    async def expire(self, now: float) -> None:
        for notice in self.registry.expire(now):
            self.events.deliver(notice.notify, {"type": "peer_left", "peer_id": notice.peer_id})
            channel = self.registry.channels.get(notice.channel)
            if notice.broadcast_ended and channel is not None:
                self.events.deliver(
                    list(channel.peers), {"type": "broadcast_ended", "reason": "broadcaster_left"}
                )

    async def status(self, peer_id: str, status: Status) -> None:
        gone = self.registry.status(peer_id, status, time.monotonic())
        for other_id in gone:
            self.events.deliver([peer_id], {"type": "peer_left", "peer_id": other_id})

    async def publish(self, peer_id: str, media: dict[str, Any], now: float) -> None:
        channel = self.registry.publish(peer_id, media, now)
        others = [other for other in channel.peers if other != peer_id]
        self.events.deliver(others, {"type": "media", "media": channel.media})

    async def end(self, peer_id: str, now: float) -> None:
        ended = self.registry.end(peer_id, now)
        if ended is not None:
            others = [other for other in ended.peers if other != peer_id]
            self.events.deliver(others, {"type": "broadcast_ended", "reason": "ended"})

    async def sweep(self, now: float) -> None:
        self.registry.sweep(now)

    async def channel_summaries(self, now: float) -> list[dict[str, Any]]:
        return [channel.summary(now) for channel in self.registry.public_channels()]

    async def channel_summary(self, name: str, now: float) -> dict[str, Any] | None:
        channel = self.registry.channels.get(name)
        return None if channel is None else channel.summary(now)

    async def totals(self) -> Totals:
        peers_by_role: dict[str, int] = {}
        for channel in self.registry.channels.values():
            for role, count in channel.role_counts.items():
                peers_by_role[role] = peers_by_role.get(role, 0) + count
        return Totals(peers_by_role, len(self.registry.channels))
