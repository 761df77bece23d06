"""The one error a malformed peer message raises.

Rule: decoding never raises anything else on bad input (no struct.error, IndexError, UnicodeError),
so the swarm core can catch exactly this and drop the sender without hurting anyone else.
"""


class ProtocolError(ValueError):
    """A peer sent bytes that break docs/protocol.md; the sender is to be dropped."""
