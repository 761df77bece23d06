"""The sans-I/O swarm core: one `SwarmPeer` per peer, driven by a transport, a simulator or a test.

No asyncio, no sockets, no `time`: every call takes `now` (seconds; pass one clock consistently -
Unix time in real drivers so that lag across machines means something) and returns at once.

Driver API (all on `SwarmPeer`):

    core = SwarmPeer(role=Role.VIEWER, now=now, verifier=HeaderVerifier(public_key_raw),
                     rng=random.Random(seed), config=SwarmConfig(...), peer_id=own_id)
    core = SwarmPeer(role=Role.SOURCE, now=now)

    core.add_neighbour(peer_id, now) -> bool   # a data channel opened; False = full, close it
    core.remove_neighbour(peer_id, now)        # the channel closed
    core.receive(peer_id, data, now)           # one binary message arrived
    core.publish_chunk(header, data, now)      # source only; header signed by the driver
                                               # (streamer.protocol.ChunkSigner)

    core.take_ready() -> set[peer_id]          # links with something new to send
    core.next_control_message(peer_id) -> bytes | None   # send all of these, always
    core.next_data_message(peer_id, now) -> bytes | None # call only while the link has room
                                               # (bufferedAmount low / upload cap not reached)
    core.upload_peers() -> [peer_id]           # links whose requests hold an upload slot now
    core.set_link_full(peer_id, full)          # the link's buffer reached its high mark (True)
                                               # or has room again (False)
    core.next_timer() -> float | None          # call handle_timer(now) at that time
    core.handle_timer(now)
    core.pop_events() -> list[Event]           # ChunkComplete, ChunkPlayed, ChunkMissed,
                                               # DropNeighbour (send .bye, then close),
                                               # WantNeighbours (ask the server for candidates),
                                               # PeerSignal (a WebRTC signal relayed to us)
    core.exchange_candidates(count, now) -> [(peer_id, via)]  # peers our neighbours named
    core.send_signal(via, to, payload) -> bool # a WebRTC signal to `to` through neighbour `via`
    core.stats() -> dict                       # startup_s, continuity, lag_s_p50, lag_s_p95,
                                               # chunks_played, chunks_missed, bytes_from_source,
                                               # bytes_from_peers, bytes_uploaded, ...
    core.leave() -> bytes                      # the bye to send to everyone on shutdown

After every call that feeds the core (receive, handle_timer, publish_chunk, add/remove_neighbour),
the driver drains pop_events(), sends the control messages of every peer in take_ready(), pumps data
messages while each link has room, and re-arms its timer from next_timer(). Flow control is the
driver's: the core produces a piece only when asked, so a slow link simply gets fewer pieces.
"""

from streamer.swarm.chunks import ChunkStore, HeaderVerifier
from streamer.swarm.config import SwarmConfig
from streamer.swarm.events import (
    ChunkComplete,
    ChunkMissed,
    ChunkPlayed,
    DropNeighbour,
    Event,
    PeerSignal,
    WantNeighbours,
)
from streamer.swarm.peer import SwarmPeer, percentile
from streamer.swarm.playback import Playback
from streamer.swarm.scheduler import Ask, Holder, Want, plan_pieces

__all__ = [
    "Ask",
    "ChunkComplete",
    "ChunkMissed",
    "ChunkPlayed",
    "ChunkStore",
    "DropNeighbour",
    "Event",
    "HeaderVerifier",
    "Holder",
    "PeerSignal",
    "Playback",
    "SwarmConfig",
    "SwarmPeer",
    "Want",
    "WantNeighbours",
    "percentile",
    "plan_pieces",
]
