"""Two real processes: throughput of one data channel, and a receiver that vanishes."""

from __future__ import annotations

import pytest

from streamer.bench.data_channel import run_bench
from streamer.transport.rtc import RtcConfig

pytestmark = pytest.mark.timeout(90)


async def test_throughput_between_two_processes() -> None:
    result = await run_bench(total_bytes=4 * 1024 * 1024, message_bytes=16 * 1024)
    print(
        f"\ntwo processes, 16 KiB messages: {result.rate_mbps:.1f} Mbit/s, setup"
        f" {result.setup_s:.2f} s, CPU s per Mbit: sender {result.sender_cpu_s_per_mbit:.4f}"
        f" receiver {result.receiver_cpu_s_per_mbit:.4f}"
    )
    # The child confirmed every byte (run_bench waits for its count); sanity-check the figures.
    assert result.transfer_s > 0 and result.rate_mbps > 1.0
    assert 0 < result.setup_s < 10


async def test_a_receiver_killed_mid_transfer_is_closed_within_the_stall_bound() -> None:
    config = RtcConfig(stall_timeout_s=2.0, watchdog_interval_s=0.1)
    result = await run_bench(
        total_bytes=64 * 1024 * 1024, kill_after_bytes=1024 * 1024, config=config
    )
    print(
        f"\nreceiver killed: sender noticed after {result.vanish_detect_s:.2f} s"
        f" ({result.vanish_reason})"
    )
    assert result.vanish_reason == "stalled"
    assert result.vanish_detect_s is not None and result.vanish_detect_s < 2.0 + 1.5
