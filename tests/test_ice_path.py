"""The selected ICE candidate pair, named and serialised (pure), and its failure modes."""

from __future__ import annotations

import pytest

from streamer.transport.ice_path import IcePath, ice_path, pair_type, probe_rtt_s


@pytest.mark.parametrize(
    ("local", "remote", "expected"),
    [
        ("host", "host", "host"),
        ("host", "srflx", "srflx"),
        ("prflx", "host", "prflx"),
        ("srflx", "prflx", "srflx"),
        ("relay", "host", "relay"),
        ("host", "relay", "relay"),
        ("relay", "relay", "relay"),
    ],
)
def test_a_pair_is_named_after_its_more_indirect_end(
    local: str, remote: str, expected: str
) -> None:
    assert pair_type(local, remote) == expected


def test_json_shape() -> None:
    path = IcePath("relay", "host", "udp")
    assert path.to_json() == {
        "pair_type": "relay",
        "local_candidate_type": "relay",
        "remote_candidate_type": "host",
        "protocol": "udp",
        "rtt_ms": None,
    }
    assert path.with_rtt(0.01234).to_json()["rtt_ms"] == 12.34
    assert path.with_rtt(0.01).rtt_s == 0.01 and path.rtt_s is None


async def test_no_connection_means_no_path() -> None:
    # Not connected yet, or aiortc's internals look different: None, never an exception.
    assert ice_path(object()) is None
    assert ice_path(None) is None
    assert await probe_rtt_s(object()) is None
