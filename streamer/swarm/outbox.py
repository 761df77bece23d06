"""What a peer has to say: per-link control queues, the links with something to send, events.

Every module of the core writes here and none reads another's queue. Rules: a control message is
queued on its neighbour's link and that link is marked ready in the same step (the driver sends
the control messages of every ready link, see streamer.swarm.drain); events keep their order; a
neighbour is dropped only through drop(), which the peer wires to its own remove_neighbour so that
every module lets go of the neighbour in one place.
"""

from __future__ import annotations

from collections.abc import Callable

from streamer.protocol import ByeReason
from streamer.swarm.events import Event
from streamer.swarm.neighbours import Neighbour

DropHook = Callable[[Neighbour, str, ByeReason], None]


class Outbox:
    """Control messages by link, the set of links that got new output, and the event list."""

    def __init__(self) -> None:
        self.ready: set[str] = set()
        """Links that got control messages or servable data since the driver last looked."""
        self.events: list[Event] = []
        self._drop_hook: DropHook | None = None

    def send(self, nb: Neighbour, data: bytes) -> None:
        """Queue a control message (hello, buffer map, have, header push, request, cancel,
        absent) to nb."""
        nb.control.append(data)
        self.ready.add(nb.peer_id)

    def wake(self, peer_id: str) -> None:
        """peer_id's link may have data to send now (a piece arrived, a slot freed up)."""
        self.ready.add(peer_id)

    def emit(self, event: Event) -> None:
        self.events.append(event)

    def take_ready(self) -> set[str]:
        ready, self.ready = self.ready, set()
        return ready

    def pop_events(self) -> list[Event]:
        events, self.events = self.events, []
        return events

    def on_drop(self, hook: DropHook) -> None:
        """Who removes a dropped neighbour (the peer, which owns the neighbour table)."""
        self._drop_hook = hook

    def drop(self, nb: Neighbour, reason: str, bye_reason: ByeReason) -> None:
        """Drop nb now (a forger, a staller, a protocol error): it gets a bye with reason."""
        if self._drop_hook is None:
            raise RuntimeError("no drop hook: the peer wires it at construction")
        self._drop_hook(nb, reason, bye_reason)
