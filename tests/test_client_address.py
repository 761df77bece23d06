"""Whose socket it is behind a trusted reverse proxy: the pure rule, then the caps on a server."""

from __future__ import annotations

from typing import Any

import pytest
from signaling_helpers import expect_closed, join, make_client

from signaling.client_address import client_address, parse_trusted_proxy
from signaling.config import add_arguments, config_from_args
from streamer.errors import UserError

PROXY = (parse_trusted_proxy("10.0.0.0/8"), parse_trusted_proxy("::1"))


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "expected"),
    [
        # Not from a proxy: its own address, whatever it claims.
        ("198.51.100.7", ["203.0.113.5"], "198.51.100.7"),
        # From the proxy: the address the proxy saw.
        ("10.0.0.2", ["203.0.113.5"], "203.0.113.5"),
        # The client's own X-Forwarded-For is left of what the proxy appended: never used.
        ("10.0.0.2", ["1.1.1.1, 203.0.113.5"], "203.0.113.5"),
        # Two proxies: skip every trusted hop from the right.
        ("10.0.0.2", ["203.0.113.5, 10.0.0.3"], "203.0.113.5"),
        ("::1", ["2001:db8::7"], "2001:db8::7"),
        # Split over several header lines, read as one list.
        ("10.0.0.2", ["1.1.1.1", "203.0.113.5"], "203.0.113.5"),
        # No header, or nothing but proxies: the left-most proxy.
        ("10.0.0.2", [], "10.0.0.2"),
        ("10.0.0.2", ["10.0.0.9"], "10.0.0.9"),
        # Junk ends the walk at the last trusted hop; it never becomes an address to count.
        ("10.0.0.2", ["not-an-ip"], "10.0.0.2"),
        ("10.0.0.2", ["x, 10.0.0.3"], "10.0.0.3"),
    ],
)
def test_the_client_is_the_last_hop_no_trusted_proxy_vouches_for(
    peer: str, forwarded_for: list[str], expected: str
) -> None:
    assert client_address(peer, forwarded_for, PROXY) == expected


def test_without_trusted_proxies_the_header_is_ignored() -> None:
    assert client_address("127.0.0.1", ["203.0.113.5"], ()) == "127.0.0.1"


def test_a_bad_trusted_proxy_is_a_one_line_error() -> None:
    import argparse

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert config_from_args(parser.parse_args(["--trusted-proxy", "127.0.0.1"])).trusted_proxies
    with pytest.raises(UserError, match="bad --trusted-proxy"):
        config_from_args(parser.parse_args(["--trusted-proxy", "proxy.example"]))


async def _join_via_proxy(client: Any, forwarded_for: str) -> tuple[Any, dict[str, Any]]:
    ws = await client.ws_connect("/ws", headers={"X-Forwarded-For": forwarded_for})
    await ws.send_json({"type": "join", "channel": "c", "role": "viewer"})
    return ws, await ws.receive_json(timeout=5)


async def test_behind_a_trusted_proxy_the_caps_count_each_client(aiohttp_client: Any) -> None:
    """The test client connects from 127.0.0.1, here the proxy: each forwarded address gets its
    own cap, and the proxy's own address is no longer exempt as loopback."""
    client = await make_client(
        aiohttp_client,
        max_connections_per_ip=2,
        trusted_proxies=(parse_trusted_proxy("127.0.0.1"),),
    )
    held = [await _join_via_proxy(client, "203.0.113.5") for _ in range(2)]
    assert all(reply["type"] == "welcome" for _, reply in held)
    third = await client.ws_connect("/ws", headers={"X-Forwarded-For": "203.0.113.5"})
    error = await expect_closed(third)
    assert error is not None and error["code"] == "too_many_connections"
    other, reply = await _join_via_proxy(client, "198.51.100.7")  # another client: unaffected
    assert reply["type"] == "welcome"
    for ws in [other, *(ws for ws, _ in held)]:
        await ws.close()


async def test_a_client_that_is_not_a_proxy_cannot_pick_its_address(aiohttp_client: Any) -> None:
    client = await make_client(
        aiohttp_client,
        limit_loopback=True,
        max_connections_per_ip=2,
        trusted_proxies=(parse_trusted_proxy("10.0.0.0/8"),),
    )
    first, _ = await join(client, "c")
    second, reply = await _join_via_proxy(client, "203.0.113.5")
    assert reply["type"] == "welcome"
    third = await client.ws_connect("/ws", headers={"X-Forwarded-For": "198.51.100.7"})
    error = await expect_closed(third)  # all three counted under 127.0.0.1
    assert error is not None and error["code"] == "too_many_connections"
    for ws in (first, second):
        await ws.close()
