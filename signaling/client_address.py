"""Whose socket it is, behind trusted reverse proxies (pure).

Behind nginx or Caddy every socket comes from the proxy, and the per-address caps would count
every viewer as one client. With `--trusted-proxy` (addresses or networks), a socket from a
trusted proxy is counted under the address the proxies received it from: the right-most entry
of X-Forwarded-For that is not itself a trusted proxy. Each proxy appends the address it saw, so
anything left of that entry may have been made up by the client and is never used. A socket from
anyone else is counted under its own address, whatever headers it sends.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_trusted_proxy(text: str) -> Network:
    """`10.0.0.1`, `10.0.0.0/8` or `::1`: one trusted proxy or network (ValueError if not)."""
    return ipaddress.ip_network(text.strip(), strict=False)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip().split("%")[0])
    except ValueError:
        return None


def _is_proxy(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address | None, proxies: tuple[Network, ...]
) -> bool:
    return address is not None and any(address in network for network in proxies)


def client_address(peer: str, forwarded_for: Iterable[str], proxies: tuple[Network, ...]) -> str:
    """The address to count this socket under: `peer` (the TCP peer), or for a socket from a
    trusted proxy the last untrusted hop of the X-Forwarded-For header values `forwarded_for`.
    A malformed hop ends the walk at the last trusted one (a client's junk never names it)."""
    if not proxies or not _is_proxy(_address(peer), proxies):
        return peer
    hops = [hop for value in forwarded_for for hop in value.split(",") if hop.strip()]
    closest = peer
    for hop in reversed(hops):
        address = _address(hop)
        if address is None:
            return closest
        if not _is_proxy(address, proxies):
            return str(address)
        closest = str(address)
    return closest
