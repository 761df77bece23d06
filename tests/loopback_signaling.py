"""An in-process stand-in for the signaling server's `signal` relay.

Why: tests of the transport (and of drivers built on it) need real aiortc peers talking to each
other without starting a server. Each `LoopbackSignaling` endpoint has the two things
`PeerManager` needs (`peer_id`, `async signal(to, data)`), and the relay delivers signals the way
the server does: as a JSON round trip, asynchronously, in order per sender. A relay can be told to
drop everything addressed to a peer, to model a peer that never answers.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from typing import Any

SignalHandler = Callable[[str, Mapping[str, Any]], None]


class LoopbackRelay:
    """Routes signals between endpoints registered under their peer ids."""

    def __init__(self) -> None:
        self._handlers: dict[str, SignalHandler] = {}
        self.blackholed: set[str] = set()
        #: Every (from, to, data) relayed, for tests that inspect the exchange.
        self.log: list[tuple[str, str, dict[str, Any]]] = []

    def endpoint(self, peer_id: str) -> LoopbackSignaling:
        return LoopbackSignaling(self, peer_id)

    def attach(self, peer_id: str, handler: SignalHandler) -> None:
        """Deliver signals addressed to `peer_id` to `handler` (e.g. PeerManager.handle_signal)."""
        self._handlers[peer_id] = handler

    def detach(self, peer_id: str) -> None:
        self._handlers.pop(peer_id, None)

    def deliver(self, from_id: str, to: str, data: Mapping[str, Any]) -> bool:
        handler = self._handlers.get(to)
        if handler is None:
            return False
        copy = json.loads(json.dumps(dict(data)))  # what a real server hands on
        self.log.append((from_id, to, copy))
        if to not in self.blackholed:
            asyncio.get_running_loop().call_soon(handler, from_id, copy)
        return True


class LoopbackSignaling:
    """One peer's side of the relay: what PeerManager calls to send a signal."""

    def __init__(self, relay: LoopbackRelay, peer_id: str) -> None:
        self._relay = relay
        self._peer_id = peer_id

    @property
    def peer_id(self) -> str | None:
        return self._peer_id

    async def signal(self, to: str, data: Mapping[str, Any]) -> bool:
        return self._relay.deliver(self._peer_id, to, data)
