"""--hop-trace lines and what `streamer netbed --hop-trace` makes of them (streamer.netbed.hops)."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamer.errors import UserError
from streamer.netbed import hops
from streamer.node.hop_trace import HopTrace, trace_line
from streamer.protocol import Have, Piece, Request, encode_message


def test_requests_and_pieces_are_traced_other_messages_not() -> None:
    request = encode_message(Request(7, 2, 3, False))
    piece = encode_message(Piece(7, 4, 16, b"x" * 100))
    assert trace_line(1.5, True, "bob", request) == "1.5000 > bob R 7 2 3\n"
    assert trace_line(2.25, False, "ann", piece) == "2.2500 < ann P 7 4\n"
    assert trace_line(1.0, True, "bob", encode_message(Have(7, (True, False)))) is None
    assert trace_line(1.0, True, "bob", b"") is None
    assert trace_line(1.0, True, "bob", request[:5]) is None  # malformed: the core refuses it


def test_a_written_trace_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "a.hops"
    trace = HopTrace(path)
    trace.me(0.0, "A1")
    trace.message(1.0, True, "B1", encode_message(Request(5, 0, 2, False)))
    trace.message(1.2, False, "B1", encode_message(Piece(5, 1, 4, b"p")))
    trace.close()
    trace.message(9.0, True, "B1", encode_message(Request(6, 0, 1, False)))  # closed: dropped
    parsed = hops.parse_trace([*path.read_text().splitlines(), "1.3 < B1 P 5", "garbage"])
    assert parsed.peer_ids == {"A1"}
    assert parsed.requests == {(True, "B1", 5, 0, 2): [1.0]}
    assert parsed.pieces == {(False, "B1", 5, 1): [1.2]}


def test_an_unwritable_trace_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="cannot write --hop-trace"):
        HopTrace(tmp_path / "missing-dir" / "a.hops")


def _trace(me: str, lines: list[str]) -> hops.NodeTrace:
    return hops.parse_trace([f"0 me {me}", *lines])


def test_a_pieces_trip_is_split_into_its_three_parts() -> None:
    viewer = _trace(
        "V",
        [
            "10.0 > H R 5 0 3",  # pieces 0-2 of chunk 5 asked of the holder
            "10.45 < H P 5 0",
            "10.9 < H P 5 1",  # piece 2 was cancelled: never handed over
            "11.0 > X R 6 0 1",  # of a node that wrote no trace
        ],
    )
    holder = _trace(
        "H",
        [
            "9.0 > V P 5 0",  # an earlier copy: not an answer to this request
            "10.1 < V R 5 0 3",
            "10.3 > V P 5 0",
            "10.5 > V P 5 1",
        ],
    )
    samples = hops.hop_samples({"viewer": viewer, "holder": holder})
    assert samples["request_transit_s"] == {"viewer": [pytest.approx(0.1)]}
    assert samples["holder_queue_s"] == {"holder": [pytest.approx(0.2), pytest.approx(0.4)]}
    assert samples["piece_transit_s"] == {"holder": [pytest.approx(0.15), pytest.approx(0.4)]}
    assert samples["total_s"] == {"holder": [pytest.approx(0.45), pytest.approx(0.9)]}
    summary = hops.summarise(samples, {"viewer": "viewer", "holder": "relay"})
    queue = summary["holder_queue_s"]["by_kind"]["relay"]
    assert queue == {"n": 2, "p50": 0.4, "p90": 0.4, "p99": 0.4, "max": 0.4}
    assert summary["piece_transit_s"]["by_node"]["holder"]["n"] == 2
    lines = hops.report_lines(summary)
    assert "viewer 0.10/0.10/0.10 (n=1)" in lines[1]
    assert "relay 0.40/0.40/0.40 (n=2)" in lines[2]


def test_a_request_sent_twice_pairs_in_order() -> None:
    viewer = _trace("V", ["1.0 > H R 5 0 1", "3.0 > H R 5 0 1", "3.5 < H P 5 0"])
    holder = _trace("H", ["1.2 < V R 5 0 1", "3.1 < V R 5 0 1", "3.3 > V P 5 0"])
    samples = hops.hop_samples({"v": viewer, "h": holder})
    assert samples["request_transit_s"]["v"] == [pytest.approx(0.2), pytest.approx(0.1)]
    # The first request's piece was never handed over before the second came: both wait for
    # the one handed at 3.3.
    assert samples["holder_queue_s"]["h"] == [pytest.approx(2.1), pytest.approx(0.2)]


def test_no_traces_give_empty_parts() -> None:
    summary = hops.summarise(hops.hop_samples({}), {})
    assert all(summary[part]["by_kind"] == {} for part in hops.PARTS)
    assert hops.report_lines(summary)[1].endswith(": -")
