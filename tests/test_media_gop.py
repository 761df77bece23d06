"""Pure parts of the long-GOP handling: the GOP watcher's decisions and NAL re-framing."""

from __future__ import annotations

import pytest
from media_helpers import variable_gop_times

from streamer.media.gop import (
    GopWatcher,
    default_gop_limit_s,
    gop_note,
    long_gop_action,
    long_gop_message,
)
from streamer.media.nal import (
    NalError,
    annexb_to_length_prefixed,
    nal_length_size,
    split_annexb,
)

FPS = 30


def feed(watcher: GopWatcher, keyframes_s: list[float], end_s: float) -> list[float]:
    """Frames at 30 fps up to end_s, keyframes at the given times; when note() said True."""
    keys = {round(t * FPS) for t in keyframes_s}
    reported = []
    for index in range(round(end_s * FPS)):
        t = index / FPS
        if watcher.note(t, index in keys):
            reported.append(t)
    return reported


def watcher(limit_s: float = 2.0) -> GopWatcher:
    return GopWatcher(limit_s=limit_s, frame_duration_s=1 / FPS)


def test_default_limit_is_twice_the_chunk() -> None:
    assert default_gop_limit_s(1.0) == 2.0
    assert default_gop_limit_s(0.5) == 1.0


def test_regular_short_gops_are_never_reported() -> None:
    w = watcher()
    assert feed(w, [float(t) for t in range(60)], 60.0) == []
    assert w.longest_s == pytest.approx(1.0)
    assert w.gops == 60


def test_gops_at_the_limit_are_not_long() -> None:
    w = watcher()
    assert feed(w, [0.0, 1.0, 2.0, 4.0, 6.0, 8.0], 10.0) == []
    assert w.longest_s == pytest.approx(2.0)


def test_gop_turning_long_after_six_seconds_is_reported_once_while_open() -> None:
    w = watcher()
    keys = [0, 1, 2, 3, 4, 5, 6, 9, 12, 15, 18]
    reported = feed(w, [float(t) for t in keys], 21.0)
    # The 6 s GOP passes 2 s (plus a frame of slack) at about 8.03 s, long before it closes at 9 s.
    assert len(reported) == 1
    assert 8.0 < reported[0] < 8.1
    assert w.longest_s == pytest.approx(3.0)


def test_ten_second_gop_is_reported_two_seconds_in() -> None:
    w = watcher()
    reported = feed(w, [0.0, 1.0, 11.0], 12.0)
    assert reported and 3.0 < reported[0] < 3.1
    assert w.longest_s == pytest.approx(10.0)


def test_frames_before_the_first_keyframe_count_as_a_gop() -> None:
    w = watcher()
    reported = feed(w, [2.5], 5.0)
    assert reported and reported[0] < 2.5


def test_time_going_back_restarts_the_open_gop() -> None:
    w = watcher()
    w.note(10.0, True)
    w.note(1.0, False)  # bad input: the decode time jumped back
    assert not w.note(2.5, False)
    assert w.open_span_s < 2.0 + 1 / FPS


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_variable_scene_cut_gops_are_reported_iff_one_is_long(seed: int) -> None:
    keys = list(variable_gop_times(60.0, seed, low_s=1.0, high_s=8.0))
    spans = [b - a for a, b in zip(keys, [*keys[1:], 60.0], strict=True)]
    w = watcher(limit_s=3.0)
    reported = feed(w, keys, 60.0)
    first_long = next((i for i, span in enumerate(spans) if span > 3.0 + 1.5 / FPS), None)
    if first_long is None:
        assert reported == []
    else:
        assert len(reported) == 1
        assert reported[0] == pytest.approx(keys[first_long] + 3.0, abs=2 / FPS)
    assert w.longest_s == pytest.approx(max(spans), abs=1.5 / FPS)


def test_irregular_gops_within_the_limit_pass() -> None:
    keys = list(variable_gop_times(60.0, 7, low_s=0.3, high_s=1.9))
    assert feed(watcher(), keys, 60.0) == []


def test_action_and_messages() -> None:
    assert long_gop_action("auto") == "switch"
    assert long_gop_action("always") == "switch"
    assert long_gop_action("never") == "keep"
    switch = long_gop_message("switch", 2.0, 1.0)
    assert "re-encoding" in switch and "2 s" in switch
    keep = long_gop_message("keep", 2.0, 1.0)
    assert "--transcode never" in keep and "lag" in keep
    assert gop_note(None, 5.0) is None
    assert gop_note("switch", 5.0) == "re-encoding (long GOP)"
    assert gop_note("keep", 10.0) == "long GOP 10.0s: lag +10.0s"


# -- NAL units -------------------------------------------------------------------------------

SPS = bytes.fromhex("6764001facd9")
PPS = bytes.fromhex("68ebe3cb")
IDR = bytes.fromhex("6588840021") + b"\x00\x00\x03\x01"  # emulation prevention inside


def test_annexb_with_three_and_four_byte_start_codes() -> None:
    data = b"\x00\x00\x00\x01" + SPS + b"\x00\x00\x01" + PPS + b"\x00\x00\x00\x01" + IDR
    assert split_annexb(data) == [SPS, PPS, IDR]
    framed = annexb_to_length_prefixed(data)
    expected = b"".join(len(u).to_bytes(4, "big") + u for u in (SPS, PPS, IDR))
    assert framed == expected
    assert annexb_to_length_prefixed(data, 2)[:2] == len(SPS).to_bytes(2, "big")


def test_zero_padding_before_a_start_code_is_dropped() -> None:
    data = b"\x00\x00\x01" + SPS + b"\x00\x00\x00\x00\x00\x01" + PPS
    assert split_annexb(data) == [SPS, PPS]


def test_not_annexb_is_refused() -> None:
    with pytest.raises(NalError):
        split_annexb(len(SPS).to_bytes(4, "big") + SPS)  # already length-prefixed
    with pytest.raises(NalError):
        split_annexb(b"")
    with pytest.raises(NalError):
        annexb_to_length_prefixed(b"\x00\x00\x01" + b"\x65" * 300, 1)
    with pytest.raises(NalError):
        annexb_to_length_prefixed(b"\x00\x00\x01\x65", 3)


def test_length_size_from_avcc() -> None:
    assert nal_length_size(bytes([1, 0x64, 0, 0x1F, 0xFF, 0xE1])) == 4
    assert nal_length_size(bytes([1, 0x64, 0, 0x1F, 0xFD, 0xE1])) == 2
    with pytest.raises(NalError):
        nal_length_size(b"\x00\x00\x00\x01")
