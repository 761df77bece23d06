"""Short-lived TURN credentials: the TURN REST API scheme that coturn's `use-auth-secret` checks.

    username   = f"{expiry_unix_s}:{peer_id}"
    credential = base64(HMAC-SHA1(secret, username))

coturn recomputes the credential from its own copy of the secret (`static-auth-secret`) and refuses
a username whose expiry is in the past, so a leaked credential is worth little and nothing has to
be stored per peer. Every `welcome` carries a fresh one, so a reconnect refreshes it.

Rules: the secret goes into the HMAC and nowhere else (never into a message, a page or a log);
functions here are pure (`now_unix_s` is an argument).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
from dataclasses import dataclass

#: How long a credential stays valid by default. coturn checks the expiry on every request of an
#: allocation (refreshes included), so this also caps how long one relayed connection lasts.
DEFAULT_TTL_S = 6 * 3600.0


@dataclass(frozen=True)
class TurnCredential:
    """A username/credential pair for one peer, valid until `expires_at_unix_s`."""

    username: str
    credential: str
    expires_at_unix_s: int


def turn_password(secret: str, username: str) -> str:
    """base64(HMAC-SHA1(secret, username)), as coturn computes it for `use-auth-secret`."""
    digest = hmac.new(secret.encode("utf-8"), username.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def make_turn_credential(
    secret: str, peer_id: str, now_unix_s: float, ttl_s: float = DEFAULT_TTL_S
) -> TurnCredential:
    """A credential for `peer_id` that expires `ttl_s` after `now_unix_s` (rounded up to 1 s)."""
    if not secret:
        raise ValueError("the TURN secret must not be empty")
    if ttl_s <= 0:
        raise ValueError("ttl_s must be > 0")
    if ":" in peer_id:
        raise ValueError("a peer id must not contain ':' (it separates the expiry)")
    expires_at = expiry_unix_s(now_unix_s, ttl_s)
    username = f"{expires_at}:{peer_id}"
    return TurnCredential(username, turn_password(secret, username), expires_at)


def expiry_unix_s(now_unix_s: float, ttl_s: float) -> int:
    """When a credential made at `now_unix_s` expires: whole seconds, rounded up."""
    return math.ceil(now_unix_s + ttl_s)


def credential_expiry_unix_s(username: str) -> int | None:
    """The expiry a REST-scheme username carries (`EXPIRY:ID`), or None if it has none."""
    head, sep, _ = username.partition(":")
    if not sep or not head.isdigit():
        return None
    return int(head)


def needs_refresh(expires_at_unix_s: int, now_unix_s: float, ttl_s: float) -> bool:
    """True once less than half of a credential's lifetime is left: time to hand out a new one."""
    return expires_at_unix_s - now_unix_s < ttl_s / 2
