"""Per-address caps: how many sockets and how many channels one IP address may hold (pure).

Why: without them one address can open thousands of sockets or spread viewers over thousands of
made-up channels, and everyone else pays in memory and CPU. Loopback is exempt by default so that
a test or a load generator on the server's own host can run many peers; `limit_loopback` turns
that off (the abuse tests do). A cap of 0 means no cap. Behind a reverse proxy the address is
the client's as the proxy tells it (`--trusted-proxy`, signaling.client_address).
"""

from __future__ import annotations

import ipaddress
from collections import Counter


def is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%")[0]).is_loopback
    except ValueError:
        return False


class IpLimits:
    """Counts sockets and channel memberships per address; `allow_*` refuse without counting."""

    def __init__(
        self, max_connections_per_ip: int, max_channels_per_ip: int, limit_loopback: bool
    ) -> None:
        self.max_connections_per_ip = max_connections_per_ip
        self.max_channels_per_ip = max_channels_per_ip
        self.limit_loopback = limit_loopback
        self._connections: Counter[str] = Counter()
        #: address -> channel -> peers of that address in it
        self._channels: dict[str, Counter[str]] = {}

    def _exempt(self, address: str) -> bool:
        return not self.limit_loopback and is_loopback(address)

    def caps_connections(self, address: str) -> bool:
        """Whether `address` has a socket cap at all (a cluster then counts it too)."""
        return bool(self.max_connections_per_ip) and not self._exempt(address)

    def caps_channels(self, address: str) -> bool:
        """Whether `address` has a channel cap at all (a cluster then counts it too)."""
        return bool(self.max_channels_per_ip) and not self._exempt(address)

    def connect(self, address: str) -> bool:
        """Count one more socket from `address`; False (nothing counted) when over the cap."""
        cap = self.max_connections_per_ip
        if cap and not self._exempt(address) and self._connections[address] >= cap:
            return False
        self._connections[address] += 1
        return True

    def disconnect(self, address: str) -> None:
        self._connections[address] -= 1
        if self._connections[address] <= 0:
            del self._connections[address]

    def enter(self, address: str, channel: str) -> bool:
        """Count a peer of `address` in `channel`; False when it would be one channel too many."""
        channels = self._channels.get(address)
        cap = self.max_channels_per_ip
        if (
            cap
            and channels is not None
            and channel not in channels
            and len(channels) >= cap
            and not self._exempt(address)
        ):
            return False
        if channels is None:
            channels = self._channels[address] = Counter()
        channels[channel] += 1
        return True

    def leave(self, address: str, channel: str) -> None:
        channels = self._channels.get(address)
        if channels is None:
            return
        channels[channel] -= 1
        if channels[channel] <= 0:
            del channels[channel]
        if not channels:
            del self._channels[address]

    def addresses(self) -> int:
        """Addresses holding sockets or channels now (stays bounded: emptied entries go)."""
        return len(self._connections.keys() | self._channels.keys())
