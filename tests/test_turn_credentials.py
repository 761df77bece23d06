"""Short-lived TURN credentials (pure) and how the server configuration hands them out."""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
from pathlib import Path

import pytest

from signaling.config import (
    ServerConfig,
    add_arguments,
    config_from_args,
    parse_ice_servers,
)
from signaling.turn_credentials import (
    DEFAULT_TTL_S,
    credential_expiry_unix_s,
    make_turn_credential,
    needs_refresh,
    turn_password,
)
from streamer.errors import UserError

SECRET = "north-sea-secret"
NOW_UNIX_S = 1_700_000_000.0


def reference_password(secret: str, username: str) -> str:
    """The TURN REST API password, computed here without the module under test."""
    mac = hmac.new(secret.encode(), username.encode(), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode()


def test_known_vector() -> None:
    # Computed with `printf %s 1700021600:peer-A | openssl dgst -sha1 -hmac north-sea-secret
    # -binary | base64`.
    assert turn_password(SECRET, "1700021600:peer-A") == "+p5JmQ1L7uFpaTPvR4W+kLv14Ts="
    assert reference_password(SECRET, "1700021600:peer-A") == "+p5JmQ1L7uFpaTPvR4W+kLv14Ts="


def test_credential_for_a_peer() -> None:
    cred = make_turn_credential(SECRET, "peer-A", NOW_UNIX_S, ttl_s=6 * 3600)
    assert cred.username == "1700021600:peer-A"
    assert cred.expires_at_unix_s == 1_700_021_600
    assert cred.credential == reference_password(SECRET, cred.username)
    assert SECRET not in cred.username + cred.credential


def test_expiry_rounds_up_and_parses_back() -> None:
    cred = make_turn_credential(SECRET, "p", 100.2, ttl_s=60)
    assert cred.expires_at_unix_s == 161  # never earlier than asked
    assert credential_expiry_unix_s(cred.username) == 161
    assert credential_expiry_unix_s("static-user") is None
    assert credential_expiry_unix_s("abc:def") is None
    assert DEFAULT_TTL_S >= 3600


def test_different_peers_secrets_and_times_differ() -> None:
    a = make_turn_credential(SECRET, "peer-A", NOW_UNIX_S)
    assert make_turn_credential(SECRET, "peer-B", NOW_UNIX_S).credential != a.credential
    assert make_turn_credential("other", "peer-A", NOW_UNIX_S).credential != a.credential
    later = make_turn_credential(SECRET, "peer-A", NOW_UNIX_S + 1)
    assert later.username != a.username and later.credential != a.credential


@pytest.mark.parametrize(
    ("secret", "peer_id", "ttl_s"), [("", "p", 60.0), ("s", "p", 0.0), ("s", "a:b", 60.0)]
)
def test_bad_arguments_are_refused(secret: str, peer_id: str, ttl_s: float) -> None:
    with pytest.raises(ValueError):
        make_turn_credential(secret, peer_id, NOW_UNIX_S, ttl_s)


def test_refresh_after_half_the_lifetime() -> None:
    expires = 1000 + 3600
    assert not needs_refresh(expires, 1000, 3600)
    assert not needs_refresh(expires, 1000 + 1799, 3600)
    assert needs_refresh(expires, 1000 + 1801, 3600)
    assert needs_refresh(expires, expires + 10, 3600)


# --- server configuration -------------------------------------------------------------------


def parse_args(*argv: str) -> ServerConfig:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return config_from_args(parser.parse_args(list(argv)))


def test_secret_gives_each_peer_its_own_credentials() -> None:
    config = parse_args(
        "--turn-url",
        "turn:127.0.0.1:3478",
        "--turn-url",
        "stun:127.0.0.1:3478",
        "--turn-secret",
        SECRET,
        "--turn-ttl",
        "600",
    )
    assert config.turn_ttl_s == 600
    assert SECRET not in repr(config)
    turn, stun = config.ice_servers_for_peer("peer-A", NOW_UNIX_S)
    assert stun == {"urls": ["stun:127.0.0.1:3478"]}
    assert turn["urls"] == ["turn:127.0.0.1:3478"]
    assert turn["username"] == f"{int(NOW_UNIX_S) + 600}:peer-A"
    assert turn["credential"] == reference_password(SECRET, turn["username"])
    # The page (shared by everyone) gets no per-peer credentials: only the STUN entry.
    assert config.ice_servers_json() == [{"urls": ["stun:127.0.0.1:3478"]}]


def test_static_credentials_still_work() -> None:
    config = parse_args(
        "--ice-server", "turn:t.example:3478", "--turn-username", "u", "--turn-credential", "c"
    )
    expected = [{"urls": ["turn:t.example:3478"], "username": "u", "credential": "c"}]
    assert config.ice_servers_for_peer("p", NOW_UNIX_S) == expected
    assert config.ice_servers_json() == expected


def test_secret_file(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_text(SECRET + "\n")
    config = parse_args("--turn-url", "turn:h:3478", "--turn-secret-file", str(path))
    assert config.turn_secret == SECRET


@pytest.mark.parametrize(
    "argv",
    [
        ["--turn-secret", SECRET],  # no turn: URL to use it for
        ["--turn-url", "stun:h:3478", "--turn-secret", SECRET],
        ["--turn-url", "turn:h:3478", "--turn-secret", ""],
        ["--turn-url", "turn:h:3478", "--turn-secret", SECRET, "--turn-username", "u"],
        ["--turn-url", "turn:h:3478", "--turn-secret", SECRET, "--turn-ttl", "0"],
        ["--turn-url", "turn:h:3478", "--turn-secret", "a", "--turn-secret-file", "/x"],
        ["--turn-url", "turn:h:3478", "--turn-secret-file", "/nonexistent/secret"],
        ["--turn-url", "http://h"],
    ],
)
def test_bad_turn_options_are_user_errors(argv: list[str]) -> None:
    with pytest.raises(UserError):
        parse_args(*argv)


def test_parse_ice_servers_marks_turn_urls_for_the_secret() -> None:
    servers = parse_ice_servers(["stun:a:1", "turns:b:443?transport=tcp"], secret_auth=True)
    assert [s.secret_auth for s in servers] == [False, True]
    assert all(s.username is None and s.credential is None for s in servers)
