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

import re
from typing import Literal

PROTOCOL_VERSION = 1
"""The `v` of a join and of a welcome; any other version is refused."""

ROLES = ("viewer", "relay", "broadcaster")
Role = Literal["viewer", "relay", "broadcaster"]

CHANNEL_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
PEER_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
"""Peer ids are chosen by the server; peers check what they echo back (signal `to`, status)."""

__all__ = ["CHANNEL_NAME_RE", "PEER_ID_RE", "PROTOCOL_VERSION", "ROLES", "Role"]
