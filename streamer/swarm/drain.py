"""Moving a core's output onto links: the one drain loop every driver of the core uses.

The core queues control messages per link and produces data messages (headers, pieces) only when
asked, so flow control stays with the driver: the node's data channels, the simulator's modelled
links, test harnesses. Rules: every control message is sent, in order, before any data for that
link; data is pulled only while the driver says the link may take more; a send that fails stops
that link for now (the core keeps what it did not hand out).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol


class CoreOutput(Protocol):
    def next_control_message(self, peer_id: str) -> bytes | None: ...

    def next_data_message(self, peer_id: str, now: float) -> bytes | None: ...


Send = Callable[[str, bytes], bool]
"""Hand one message for peer_id to its link; False when the link refused it (closed, full)."""


def send_control(core: CoreOutput, peer_id: str, send: Send) -> bool:
    """Send every control message queued for peer_id; False if the link refused one."""
    while (data := core.next_control_message(peer_id)) is not None:
        if not send(peer_id, data):
            return False
    return True


def send_data(
    core: CoreOutput,
    peer_id: str,
    now: float,
    send: Send,
    may_send: Callable[[], bool] | None = None,
) -> int:
    """Pull headers and pieces for peer_id while may_send() allows (always, if None); returns
    how many were sent."""
    sent = 0
    while may_send is None or may_send():
        data = core.next_data_message(peer_id, now)
        if data is None or not send(peer_id, data):
            break
        sent += 1
    return sent


def send_ready_control(core: CoreOutput, peer_ids: Iterable[str], send: Send) -> None:
    """Send the control messages of several links, in peer-id order (a simulation must not
    depend on hash order)."""
    for peer_id in sorted(peer_ids):
        send_control(core, peer_id, send)


def drain_link(core: CoreOutput, peer_id: str, now: float) -> list[bytes]:
    """Everything core has for peer_id now, control messages first, then data, then the control
    messages serving queued meanwhile (absents): an ideal link, for tests and bridges."""
    out: list[bytes] = []

    def keep(_peer_id: str, data: bytes) -> bool:
        out.append(data)
        return True

    send_control(core, peer_id, keep)
    send_data(core, peer_id, now, keep)
    send_control(core, peer_id, keep)
    return out
