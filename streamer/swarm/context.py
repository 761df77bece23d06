"""What every part of one peer shares: its settings, chunk store, neighbour table and outbox."""

from __future__ import annotations

from dataclasses import dataclass

from streamer.swarm.chunks import ChunkStore
from streamer.swarm.config import SwarmConfig
from streamer.swarm.neighbours import Neighbour
from streamer.swarm.outbox import Outbox


@dataclass(slots=True)
class PeerContext:
    """Built once by the peer; each part keeps the fields it uses."""

    config: SwarmConfig
    store: ChunkStore
    nbrs: dict[str, Neighbour]
    """The neighbour table: the peer adds and removes neighbours, the parts read it."""
    outbox: Outbox
