"""A discrete-event network for the swarm core: virtual clock, per-peer upload capacity, link
latency, loss, churn. Tests use it now; `streamer simulate` grows from it.

    result = run_scenario(Scenario(peers=20, duration_s=30, seed=1))
    result.summary()  # continuity_min, lag_s_p50, source_upload_ratio, wall_s, ...
"""

from streamer.sim.network import EventQueue, SimNetwork, SimNode
from streamer.sim.scenario import Scenario, SimResult, run_scenario

__all__ = ["EventQueue", "Scenario", "SimNetwork", "SimNode", "SimResult", "run_scenario"]
