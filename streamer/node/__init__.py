"""The asyncio driver that runs one swarm peer of any role, and its small helpers.

`SwarmNode` wires the signaling client, the aiortc peer manager and the sans-I/O `SwarmPeer`
together; the `broadcast`, `relay` and `watch` commands are thin shells around it.
"""

from streamer.node.driver import NodeConfig, SwarmNode
from streamer.node.keyfile import BroadcasterKey, load_or_create_key
from streamer.node.media_info import ChannelMedia, MediaInfoError, media_description, parse_media

__all__ = [
    "BroadcasterKey",
    "ChannelMedia",
    "MediaInfoError",
    "NodeConfig",
    "SwarmNode",
    "load_or_create_key",
    "media_description",
    "parse_media",
]
