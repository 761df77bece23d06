"""The broadcaster's identity: an Ed25519 signing key and the channel secret, in one file.

Why a file: a restarted broadcaster must sign with the same key (viewers keep verifying its chunks)
and present the same secret (the server gives it its channel back). The file is created on first
use with 0600 permissions; an existing file that others may read, or that is malformed, is refused
with a one-line error rather than used or overwritten.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from streamer.errors import UserError

KEY_FILE_VERSION = 1
_MAX_KEY_FILE_BYTES = 4096


@dataclass(frozen=True)
class BroadcasterKey:
    signing_key: Ed25519PrivateKey
    secret: str

    @property
    def public_key_raw(self) -> bytes:
        return self.signing_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def default_key_path(channel: str) -> Path:
    """Where `streamer broadcast` keeps a channel's key when no --key is given."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "streamer" / f"broadcast-{channel}.key"


def _encode(key: BroadcasterKey) -> bytes:
    raw = key.signing_key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    doc = {
        "version": KEY_FILE_VERSION,
        "ed25519_private_key": base64.b64encode(raw).decode("ascii"),
        "channel_secret": key.secret,
    }
    return (json.dumps(doc, indent=2) + "\n").encode("ascii")


def _decode(path: Path, data: bytes) -> BroadcasterKey:
    bad = f"key file {path} is not a streamer key file"
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise UserError(f"{bad} (not JSON)") from None
    if not isinstance(doc, dict) or doc.get("version") != KEY_FILE_VERSION:
        raise UserError(f"{bad} (unknown version)")
    secret = doc.get("channel_secret")
    encoded = doc.get("ed25519_private_key")
    if not isinstance(secret, str) or not 16 <= len(secret) <= 256:
        raise UserError(f"{bad} (bad channel_secret)")
    try:
        raw = base64.b64decode(str(encoded), validate=True)
    except (binascii.Error, ValueError):
        raise UserError(f"{bad} (bad ed25519_private_key)") from None
    if len(raw) != 32:
        raise UserError(f"{bad} (an Ed25519 private key is 32 bytes)")
    return BroadcasterKey(Ed25519PrivateKey.from_private_bytes(raw), secret)


def load_or_create_key(path: str | Path) -> BroadcasterKey:
    """Read the key file, or create it (0600, parent folders 0700) if it does not exist."""
    target = Path(path).expanduser()
    try:
        fd = os.open(target, os.O_RDONLY)
    except FileNotFoundError:
        return _create(target)
    except OSError as error:
        raise UserError(f"cannot read key file {target}: {error.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        mode = os.fstat(handle.fileno()).st_mode
        if not stat.S_ISREG(mode):
            raise UserError(f"key file {target} is not a regular file")
        if mode & 0o077:
            raise UserError(f"key file {target} is readable by others: chmod 600 it")
        data = handle.read(_MAX_KEY_FILE_BYTES + 1)
    if len(data) > _MAX_KEY_FILE_BYTES:
        raise UserError(f"key file {target} is too large to be a streamer key file")
    return _decode(target, data)


def _create(target: Path) -> BroadcasterKey:
    key = BroadcasterKey(Ed25519PrivateKey.generate(), secrets.token_urlsafe(32))
    try:
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process created it meanwhile: use theirs
        return load_or_create_key(target)
    except OSError as error:
        raise UserError(f"cannot create key file {target}: {error.strerror}") from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(_encode(key))
    return key
