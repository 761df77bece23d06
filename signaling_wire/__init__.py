"""The signaling server's wire vocabulary (docs/signaling.md): the words both ends of /ws agree on.

Why a top-level package of its own: the server (`signaling`) parses these words and the Python
peers (`streamer.transport`, `streamer.node`, `streamer.commands`) speak them, and neither package
should borrow the other's module for it: importing `signaling.protocol` from a peer drags the
server's parser along, and declaring the words twice let them drift. This package imports nothing
of the project, so either side can depend on it. The browser's copy (web/static/js/signaling.js) is
checked against it by tests/test_wire_vocabulary.py.

Not to be confused with the peer wire protocol spoken over data channels (streamer.protocol,
its own PROTOCOL_VERSION).
"""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Literal

PROTOCOL_VERSION = 1
"""The `v` of a join and of a welcome; any other version is refused."""

ROLES = ("viewer", "relay", "broadcaster")
Role = Literal["viewer", "relay", "broadcaster"]

CHANNEL_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
PEER_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
"""Peer ids are chosen by the server; peers check what they echo back (signal `to`, status)."""

MIN_PEER_SECRET_CHARS = 16
MAX_PEER_SECRET_CHARS = 256
"""A join's `peer_secret`: a random string the client keeps for its whole life and sends to the
servers only (never to other peers). Its peer id is derived from it, see `peer_id_for`."""

PEER_ID_CHARS = 16
"""Length of an id derived from a peer secret (96 bits); random ids of secret-less joins are
shorter (11), so the two kinds never collide."""

_PEER_ID_DOMAIN = b"streamer peer id\x00"


def peer_id_for(channel: str, peer_secret: str) -> str:
    """The peer id a join with `peer_secret` gets in `channel`: the same on every server of a
    cluster and after a server restart (nothing is stored), and nobody can take an id without
    its secret (finding a secret for a given id is a SHA-256 preimage)."""
    digest = hashlib.sha256(
        _PEER_ID_DOMAIN
        + channel.encode("utf-8", "surrogatepass")
        + b"\x00"
        + peer_secret.encode("utf-8", "surrogatepass")
    ).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii")[:PEER_ID_CHARS]


__all__ = [
    "CHANNEL_NAME_RE",
    "MAX_PEER_SECRET_CHARS",
    "MIN_PEER_SECRET_CHARS",
    "PEER_ID_CHARS",
    "PEER_ID_RE",
    "PROTOCOL_VERSION",
    "ROLES",
    "Role",
    "peer_id_for",
]
