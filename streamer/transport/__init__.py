"""The only I/O layer of a peer: the signaling WebSocket client and aiortc data channels.

`signaling_client` speaks the `/ws` JSON contract (docs/signaling.md) to the bootstrap server;
`rtc` opens one RTCPeerConnection with one binary data channel per neighbour, using that client to
carry offers, answers and ICE candidates. The swarm core above never sees either: it gets bytes,
peer ids and "the link has room" signals.
"""

from streamer.transport.rtc import PeerListener, PeerManager, PeerStats, RtcConfig
from streamer.transport.signaling_client import (
    BroadcastEnded,
    Disconnected,
    IceServer,
    IceServersUpdate,
    MediaUpdate,
    OtherMessage,
    PeerLeft,
    PeerRecord,
    PeersUpdate,
    Reconnected,
    ServerError,
    SignalingClient,
    SignalingError,
    SignalingEvent,
    SignalMessage,
    Welcome,
)

__all__ = [
    "BroadcastEnded",
    "Disconnected",
    "IceServer",
    "IceServersUpdate",
    "MediaUpdate",
    "OtherMessage",
    "PeerLeft",
    "PeerListener",
    "PeerManager",
    "PeerRecord",
    "PeerStats",
    "PeersUpdate",
    "Reconnected",
    "RtcConfig",
    "ServerError",
    "SignalMessage",
    "SignalingClient",
    "SignalingError",
    "SignalingEvent",
    "Welcome",
]
