"""Measuring the system: `streamer bench` (real processes on loopback, next to a client-server
baseline) and `streamer simulate` (the sans-I/O core in virtual time).

Modules, one job each:
    figures   pure: percentiles, per-viewer summaries, the fluid bound
    table     pure: the side-by-side text tables
    statusline pure: parse the nodes' status lines (the bench's live view of each process)
    procs     child processes: spawn staggered, tail their logs, CPU from /proc, clean up
    clip      the benchmark stream, made once from the bundled sample
    origin    the client-server baseline's aiohttp origin (live chunks, long-poll)
    http_viewer  a baseline viewer: fetches over HTTP, plays by the swarm's playout rules
    baseline  runs origin + N HTTP viewers and collects the same figures as the swarm
    swarm_run runs broadcaster + relays + watchers as processes and collects their figures
    simulate  Scenario runs and sweeps for `streamer simulate`
    plot      matplotlib (Agg) figures for both commands
"""
