"""Peer exchange with real nodes: the signaling server goes away, viewers leave, and the ones
that stay find new neighbours through the ones they still have (offers and answers relayed over
the data channels), then play on.

Real aiortc links on 127.0.0.1 in one event loop (tests/test_node_swarm.py's broadcast); the
server is closed for good, so every link opened after that went through peer exchange.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import replace

import pytest
from test_node_swarm import RecordingNode, broadcast
from waiting import wait_until

from signaling.app import RunningServer
from streamer.node.driver import NodeConfig, SwarmNode
from streamer.swarm import SwarmConfig

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]

TARGET = 3
"""Viewers want 3 neighbours and take at most 4: with 6 viewers, nobody is linked to everyone."""


class ExchangingViewer(RecordingNode):
    """A recording node that also keeps why each of its links closed."""

    def __init__(self, config: NodeConfig) -> None:
        super().__init__(config)
        self.closed: list[tuple[str, str]] = []

    def on_peer_closed(self, peer_id: str, reason: str) -> None:
        self.closed.append((peer_id, reason))
        super().on_peer_closed(peer_id, reason)


def exchanging_viewer(server: RunningServer, peer_exchange: bool = True) -> ExchangingViewer:
    swarm = replace(SwarmConfig(), exchange_interval_s=1.0, exchange_first_s=0.3)
    return ExchangingViewer(
        NodeConfig(
            server.url,
            "t",
            "viewer",
            target_neighbours=TARGET,
            max_neighbours=TARGET + 1,
            swarm=swarm,
            peer_exchange=peer_exchange,
        )
    )


def exchange_state(node: RecordingNode | SwarmNode) -> str:
    """One line on what a node has, tries and knows, for a failure to say why."""
    core, manager = node.core, node.manager
    if core is None or manager is None:
        return f"{node.client.peer_id}: no core"
    stats = node.stats()
    fields = {
        "neighbours": sorted(core.neighbour_ids),
        "via_exchange": sorted(manager.open_peers_via_exchange()),
        "pending": sorted(manager.pending_peers()),
        "failed": sorted(node._failed.ids(node._clock())),
        "candidates": core.exchange_candidates(16, now=node._clock()),
        **{
            key: stats.get(key)
            for key in (
                "exchange_hints",
                "links_opened_via_exchange",
                "signals_relayed",
                "signals_dropped",
            )
        },
        "bad_signals": manager.bad_signals,
        "closed": getattr(node, "closed", None),
    }
    return f"{node.client.peer_id}: {fields}"


async def test_without_a_server_survivors_replace_neighbours_that_left_through_exchange(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="streamer.node.driver")  # links offered and dropped
    # Every viewer is closed however the test ends.
    async with broadcast() as cast, contextlib.AsyncExitStack() as closing:
        viewers = [exchanging_viewer(cast.server) for _ in range(6)]
        for node in viewers:
            closing.push_async_callback(node.close)
            await node.start()
        try:
            await wait_until(
                lambda: all(len(n.played) >= 2 for n in viewers), 30, "every viewer plays"
            )
        except AssertionError as failure:
            played_now = [len(n.played) for n in viewers]
            raise AssertionError(f"{failure}: chunks played {played_now}") from None
        await wait_until(
            lambda: all(n.stats()["exchange_hints"] > 0 for n in viewers),
            10,
            "every viewer heard of peers it is not linked to",
        )
        await cast.server.close()
        await wait_until(
            lambda: not any(n.client.connected for n in [cast.node, *viewers]),
            5,
            "nobody is connected to a server",
        )
        # Two viewer neighbours of the best-linked viewer leave: it falls below its target for
        # sure (with any other choice every survivor could keep enough links, and nothing would
        # need exchange).
        ids = {n.client.peer_id: n for n in viewers}
        hub = max(
            viewers, key=lambda n: len(set(n.core.neighbour_ids if n.core else ()) & ids.keys())
        )
        hub_viewers = sorted(set(hub.core.neighbour_ids if hub.core else ()) & ids.keys())
        assert len(hub_viewers) >= 2, hub_viewers
        leaving = [ids[peer_id] for peer_id in hub_viewers[:2]]
        survivors = [n for n in viewers if n not in leaving]
        gone = {n.client.peer_id for n in leaving}
        for node in leaving:
            await node.close()
        played = [len(n.played) for n in survivors]

        def replaced() -> bool:
            return all(
                n.stats()["neighbour_count"] >= TARGET - 1
                and not gone & set(n.core.neighbour_ids if n.core else ())
                for n in survivors
            ) and any(n.stats()["neighbours_via_exchange"] > 0 for n in survivors)

        try:
            await wait_until(replaced, 30, "survivors linked to each other through exchange")
        except AssertionError as failure:
            state = "\n".join(exchange_state(n) for n in [cast.node, *survivors])
            raise AssertionError(f"{failure}; gone {sorted(gone)}; survivors:\n{state}") from None
        await wait_until(
            lambda: all(len(n.played) >= p + 6 for n, p in zip(survivors, played, strict=True)),
            20,
            "survivors play on",
        )
        stats = [n.stats() for n in survivors]
    assert sum(s["links_opened_via_exchange"] for s in stats) >= 1
    assert sum(s["signals_relayed"] for s in stats) + cast.node.stats()["signals_relayed"] >= 2
    for node in survivors:
        for event in node.played:
            assert event.data == cast.released[event.seq]
