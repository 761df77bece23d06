"""Pure parts of the media pipeline: boxes, codecs, splitting, chunking, plan, pacing, units."""

from __future__ import annotations

import argparse
import struct

import pytest

from streamer.commands.package import parse_rate_bps
from streamer.media.boxes import BoxError, iter_boxes, read_box_header
from streamer.media.codecs import (
    aac_codec_string,
    audio_specific_config_from_esds,
    avc_codec_string,
    mime_type_for,
)
from streamer.media.errors import MediaError
from streamer.media.fmp4 import ChunkAssembler, Fragment, FragmentSplitter
from streamer.media.inputs import resolve_input
from streamer.media.pacing import LiveSchedule
from streamer.media.plan import StreamFacts, decide


def box(box_type: bytes, payload: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(payload), box_type) + payload


# -- codec strings ---------------------------------------------------------------------------


def test_avc_codec_string_reads_profile_constraints_level() -> None:
    assert avc_codec_string(bytes([1, 0x64, 0x00, 0x1F, 0xFF])) == "avc1.64001f"
    assert avc_codec_string(bytes([1, 0x42, 0xC0, 0x1E, 0xFF])) == "avc1.42c01e"


def test_avc_codec_string_rejects_malformed_record() -> None:
    with pytest.raises(BoxError):
        avc_codec_string(bytes([0, 0x64, 0, 0x1F]))
    with pytest.raises(BoxError):
        avc_codec_string(b"\x01\x64")


def test_aac_object_types() -> None:
    assert aac_codec_string(bytes([0x11, 0x90])) == "mp4a.40.2"  # LC, 48 kHz, stereo
    assert aac_codec_string(bytes([0x2B, 0x92])) == "mp4a.40.5"  # HE-AAC (SBR)
    # Escape value 31: object type 32 + next 6 bits; 0xF8 0x20 -> 31, then 000001 -> 33.
    assert aac_codec_string(bytes([0xF8, 0x20])) == "mp4a.40.33"
    with pytest.raises(BoxError):
        aac_codec_string(b"\x00\x00")


def test_esds_descriptor_walk_finds_decoder_specific_info() -> None:
    dsi = bytes([0x05, 0x02, 0x11, 0x90])
    dcd_body = bytes([0x40, 0x15]) + bytes(11) + dsi
    dcd = bytes([0x04, len(dcd_body)]) + dcd_body
    es_body = bytes([0x00, 0x01, 0x00]) + dcd
    # Use the 4-byte size form on the ES_Descriptor, as FFmpeg writes it.
    es = bytes([0x03, 0x80, 0x80, 0x80, len(es_body)]) + es_body
    assert audio_specific_config_from_esds(b"\x00\x00\x00\x00" + es) == bytes([0x11, 0x90])
    with pytest.raises(BoxError):
        audio_specific_config_from_esds(b"\x00\x00\x00\x00" + es[:-3])


def test_mime_type() -> None:
    assert mime_type_for("avc1.64001f,mp4a.40.2") == 'video/mp4; codecs="avc1.64001f,mp4a.40.2"'
    assert mime_type_for("mp4a.40.2") == 'audio/mp4; codecs="mp4a.40.2"'


# -- box reading -----------------------------------------------------------------------------


def test_box_header_needs_whole_box_and_rejects_bad_sizes() -> None:
    data = box(b"free", b"abcd")
    assert read_box_header(data[:10], 0) is None
    parsed = read_box_header(data, 0)
    assert parsed is not None and parsed.type == b"free" and parsed.size_bytes == 12
    with pytest.raises(BoxError):
        read_box_header(struct.pack(">I4s", 4, b"free"), 0)
    with pytest.raises(BoxError):
        read_box_header(struct.pack(">I4s", 0, b"mdat"), 0)
    large = struct.pack(">I4sQ", 1, b"mdat", 20) + b"1234"
    parsed = read_box_header(large, 0)
    assert parsed is not None and parsed.payload_start == 16 and parsed.end == 20
    with pytest.raises(BoxError):
        list(iter_boxes(data + b"\x00\x00\x00\x20xx"))


def test_splitter_rejects_mdat_without_moof() -> None:
    splitter = FragmentSplitter()
    with pytest.raises(BoxError):
        splitter.feed(box(b"ftyp", b"isom") + box(b"moov", b"") + box(b"mdat", b""))


def test_splitter_reports_truncated_tail() -> None:
    splitter = FragmentSplitter()
    splitter.feed(box(b"ftyp", b"isom")[:-2])
    with pytest.raises(BoxError):
        splitter.finish()


# -- chunk assembly --------------------------------------------------------------------------


def fragment(start: int, duration: int, sync: bool = True, timescale: int = 1000) -> Fragment:
    return Fragment(b"F%d" % start, start, start, duration, timescale, sync)


def test_assembler_groups_short_gops_into_chunks() -> None:
    assembler = ChunkAssembler(chunk_seconds=1.0)
    chunks = []
    for index in range(6):  # 0.5 s GOPs
        chunk = assembler.add(fragment(index * 500, 500))
        if chunk:
            chunks.append(chunk)
    last = assembler.finish()
    assert last is not None
    chunks.append(last)
    assert [c.seq for c in chunks] == [0, 1, 2]
    assert [c.start_s for c in chunks] == [0.0, 1.0, 2.0]
    assert [c.duration_s for c in chunks] == [1.0, 1.0, 1.0]
    assert chunks[1].data == b"F1000F1500"


def test_assembler_never_cuts_before_a_non_sync_fragment() -> None:
    assembler = ChunkAssembler(chunk_seconds=1.0)
    assert assembler.add(fragment(0, 1000)) is None
    assert assembler.add(fragment(1000, 1000, sync=False)) is None  # glued to the previous
    closed = assembler.add(fragment(2000, 1000))
    assert closed is not None and closed.duration_s == 2.0 and closed.data == b"F0F1000"


def test_assembler_closes_early_as_soon_as_a_chunk_is_whole() -> None:
    assembler = ChunkAssembler(chunk_seconds=1.0, close_early=True)
    assert assembler.add(fragment(0, 500)) is None
    closed = assembler.add(fragment(500, 500))  # 1 s reached: out now, not at the next one
    assert closed is not None and closed.data == b"F0F500" and closed.duration_s == 1.0
    long = assembler.add(fragment(1000, 2500))  # a long GOP is a chunk of its own at once
    assert long is not None and long.seq == 1 and long.start_s == 1.0
    assert assembler.add(fragment(3500, 300)) is None
    tail = assembler.finish()
    assert tail is not None and tail.seq == 2 and tail.start_s == 3.5


def test_assembler_closing_early_keeps_a_fragment_without_video() -> None:
    assembler = ChunkAssembler(chunk_seconds=1.0, close_early=True)
    assert assembler.add(fragment(0, 1000)) is not None
    audio_only = Fragment(b"A", -1, -1, 0, 1000, starts_with_sync=False)
    assert assembler.add(audio_only) is None  # kept: opens the next chunk, not dropped
    closed = assembler.add(fragment(1000, 1000))
    assert closed is not None and closed.data == b"AF1000" and closed.start_s == 1.0
    assert assembler.add(audio_only) is None
    assert assembler.finish() is None  # nothing of the primary track left: no chunk


def test_assembler_start_is_relative_to_the_first_fragment() -> None:
    assembler = ChunkAssembler(chunk_seconds=2.0)
    assembler.add(fragment(90_000, 180_000, timescale=90_000))
    chunk = assembler.add(fragment(270_000, 180_000, timescale=90_000))
    assert chunk is not None and chunk.start_s == 0.0 and chunk.duration_s == 2.0
    tail = assembler.finish()
    assert tail is not None and tail.seq == 1 and tail.start_s == 2.0


# -- plan ------------------------------------------------------------------------------------


def facts(video: str | None, audio: str | None, gop_s: float | None = 1.0) -> StreamFacts:
    return StreamFacts(video, audio, gop_s if video == "h264" else None, 1 / 30)


def test_plan_copies_chunk_friendly_h264_aac() -> None:
    plan = decide(facts("h264", "aac"), 1.0, "auto")
    assert (plan.video, plan.audio) == ("copy", "copy")
    assert decide(facts("h264", "aac", 0.5), 1.0, "auto").video == "copy"
    assert decide(facts("h264", None), 1.0, "auto").audio is None


def test_plan_encodes_everything_else() -> None:
    assert decide(facts("vp9", "opus"), 1.0, "auto").video == "encode"
    assert decide(facts("h264", "mp3"), 1.0, "auto").audio == "encode"
    long_gop = decide(facts("h264", "aac", 2.5), 1.0, "auto")
    assert long_gop.video == "encode" and "keyframe interval" in long_gop.reason
    # Up to the GOP limit (twice the chunk unless given) H.264 is copied, each GOP a chunk.
    assert decide(facts("h264", "aac", 2.0), 1.0, "auto").video == "copy"
    assert decide(facts("h264", "aac", 2.5), 1.0, "auto", gop_limit_s=3.0).video == "copy"
    assert decide(facts("h264", "aac", 2.0), 1.0, "auto", gop_limit_s=1.0).video == "encode"
    forced = decide(facts("h264", "aac"), 1.0, "always")
    assert (forced.video, forced.audio) == ("encode", "encode")


def test_plan_copies_unmeasured_h264_when_the_gop_watcher_is_on() -> None:
    unmeasured = facts("h264", "aac", None)
    assert decide(unmeasured, 1.0, "auto").video == "encode"  # a file: measured or re-encoded
    watched = decide(unmeasured, 1.0, "auto", gop_watched=True)
    assert watched.video == "copy" and watched.audio == "copy"
    assert decide(unmeasured, 1.0, "always", gop_watched=True).video == "encode"
    assert decide(facts("hevc", "aac", None), 1.0, "auto", gop_watched=True).video == "encode"


def test_plan_never_keeps_long_gops_and_says_what_it_costs() -> None:
    kept = decide(facts("h264", "aac", 10.0), 1.0, "never")
    assert (kept.video, kept.audio) == ("copy", "copy")
    assert "10.00 s" in kept.reason and "lag" in kept.reason


def test_plan_never_refuses_inputs_that_need_encoding() -> None:
    with pytest.raises(MediaError, match="--transcode never"):
        decide(facts("hevc", "aac"), 1.0, "never")
    assert decide(facts("h264", "aac"), 1.0, "never").video == "copy"
    with pytest.raises(MediaError, match="neither"):
        decide(facts(None, None), 1.0, "auto")


# -- inputs ----------------------------------------------------------------------------------


def test_resolve_input_kinds() -> None:
    assert resolve_input("clip.mp4").is_live is False
    spec = resolve_input("testsrc:320x180@25")
    assert (
        spec.format == "lavfi" and spec.is_live and "320x180" in spec.url and "rate=25" in spec.url
    )
    assert resolve_input("/dev/video0").format == "video4linux2,v4l2"
    rtsp = resolve_input("rtsp://user:secret@cam.local/stream")
    assert rtsp.is_live and rtsp.options["rtsp_transport"] == "tcp"
    assert "secret" not in rtsp.display_name
    assert resolve_input("file:///tmp/a.mp4").url == "/tmp/a.mp4"
    with pytest.raises(MediaError):
        resolve_input("  ")
    with pytest.raises(MediaError):
        resolve_input("testsrc:1x1")


# -- pacing ----------------------------------------------------------------------------------


def test_schedule_releases_each_chunk_when_its_end_is_shot() -> None:
    schedule = LiveSchedule.starting_at(now=100.0)
    assert schedule.release_time(0.0, 1.0, now=100.01) == 101.0
    assert schedule.delay_s(0.0, 1.0, now=100.01) == pytest.approx(0.99)
    assert schedule.release_time(1.0, 1.0, now=101.0) == 102.0
    assert schedule.delay_s(5.0, 1.0, now=107.5) == 0.0  # late but within slack: at once


def test_schedule_reanchors_after_falling_far_behind() -> None:
    schedule = LiveSchedule.starting_at(now=0.0, resync_after_s=3.0)
    assert schedule.release_time(0.0, 1.0, now=10.0) == 10.0  # 9 s late: re-anchor
    assert schedule.resyncs == 1
    # The next chunk follows the new anchor instead of bursting out immediately.
    assert schedule.release_time(1.0, 1.0, now=10.05) == pytest.approx(11.0)


# -- units -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1M", 1_000_000), ("800k", 800_000), ("1500000", 1_500_000), ("2.5m", 2_500_000)],
)
def test_parse_rate(text: str, expected: int) -> None:
    assert parse_rate_bps(text) == expected


@pytest.mark.parametrize("text", ["", "fast", "-1M", "0", "1X"])
def test_parse_rate_rejects_garbage(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_rate_bps(text)
