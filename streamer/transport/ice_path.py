"""Which path one connection took (host, srflx, prflx or relay) and its round-trip time.

Why: on real networks it matters whether a neighbour is reached directly, through a NAT mapping
or through a TURN server (which costs the operator bandwidth). aiortc's getStats() has no
candidate pairs, so this reads the nominated pair from aioice and measures the RTT itself: one
STUN binding request on that pair, exactly what ICE consent checks send (RFC 7675), which is where
the browser's `currentRoundTripTime` comes from too.

Rules: `pair_type` and `IcePath` are pure; everything that touches aiortc/aioice internals is in
`ice_path` and `probe_rtt_s`, and answers None instead of raising if those internals change.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, replace
from typing import Any

logger = logging.getLogger(__name__)

#: Candidate types from the most to the least indirect: a pair is named after its more indirect end.
CANDIDATE_TYPES = ("relay", "srflx", "prflx", "host")

#: ICE's data component (a data channel uses only this one).
_COMPONENT = 1


def pair_type(local_type: str, remote_type: str) -> str:
    """The path of a pair: `relay` if either end is relayed, else srflx, then prflx, then host."""
    for kind in CANDIDATE_TYPES:
        if kind in (local_type, remote_type):
            return kind
    return local_type


@dataclass(frozen=True)
class IcePath:
    """The selected candidate pair of one connection, and its last measured RTT."""

    local_type: str
    remote_type: str
    protocol: str
    rtt_s: float | None = None

    @property
    def pair_type(self) -> str:
        return pair_type(self.local_type, self.remote_type)

    def with_rtt(self, rtt_s: float | None) -> IcePath:
        return replace(self, rtt_s=rtt_s)

    def to_json(self) -> dict[str, Any]:
        """As `--stats-json` writes it per neighbour (the page's stats use the same keys)."""
        return {
            "pair_type": self.pair_type,
            "local_candidate_type": self.local_type,
            "remote_candidate_type": self.remote_type,
            "protocol": self.protocol,
            "rtt_ms": None if self.rtt_s is None else round(self.rtt_s * 1000, 2),
        }


def aioice_connection(pc: Any) -> Any:
    """The aioice Connection under an aiortc RTCPeerConnection's data channels, or None."""
    sctp = getattr(pc, "sctp", None)
    dtls = getattr(sctp, "transport", None)
    ice = getattr(dtls, "transport", None)
    return getattr(ice, "_connection", None)


def _nominated_pair(pc: Any) -> Any:
    connection = aioice_connection(pc)
    nominated = getattr(connection, "_nominated", None)
    return nominated.get(_COMPONENT) if isinstance(nominated, dict) else None


def ice_path(pc: Any) -> IcePath | None:
    """The nominated pair of an aiortc RTCPeerConnection (None before ICE completes)."""
    try:
        pair = _nominated_pair(pc)
        if pair is None:
            return None
        local, remote = pair.local_candidate, pair.remote_candidate
        return IcePath(str(local.type), str(remote.type), str(local.transport).lower())
    except Exception as error:  # aioice internals changed: no path rather than a crash
        logger.debug("cannot read the nominated pair: %s", error)
        return None


async def probe_rtt_s(pc: Any) -> float | None:
    """One STUN binding request on the nominated pair; its round trip in seconds.

    None when there is no pair yet, the check was lost or refused (no retransmission, so a
    late answer never inflates the figure; aioice gives up after 0.5 s).
    """
    try:
        connection = aioice_connection(pc)
        pair = _nominated_pair(pc)
        if pair is None or connection is None or connection.remote_password is None:
            return None
        request = connection.build_request(pair, nominate=False)
        loop = asyncio.get_running_loop()
        sent_at = loop.time()
        await pair.protocol.request(
            request,
            pair.remote_addr,
            integrity_key=connection.remote_password.encode("utf8"),
            retransmissions=0,
        )
        return loop.time() - sent_at
    except Exception as error:  # timeout, closed transport, changed internals
        logger.debug("RTT probe failed: %s", error)
        return None
