"""Tunables of the swarm core, in one place, with units in their names.

Defaults suit a ~1 Mbit/s stream of ~1 s chunks cut into 8 KiB pieces (halving them from 16 KiB
halved the time a piece spends on each hop: docs/BENCHMARKS.md, Simulation, 2026-11-25, 97daba3).
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True, slots=True)
class SwarmConfig:
    chunk_duration_s: float = 1.0
    """Nominal chunk duration: deadlines of chunks whose header is not known yet extrapolate it."""
    piece_size_bytes: int = 8192
    default_chunk_bytes: int = 131072
    """Size assumed for a chunk whose header has not arrived (in-flight accounting only)."""

    target_neighbours: int = 8
    max_neighbours: int = 12
    """Above target: room kept for newcomers who ask us."""
    want_neighbours_interval_s: float = 2.0
    exchange_interval_s: float = 5.0
    """Peer exchange: each neighbour is told our other uploading neighbours this often (0: never;
    hints received are kept and signals relayed all the same). See streamer.swarm.exchange."""
    exchange_first_s: float = 1.0
    """...the first time this long after its link opened (its hello has come by then)."""
    exchange_max_peers: int = 8
    """Ids per peers message (the wire allows 16); a longer list rotates from one to the next."""
    exchange_hint_ttl_s: float = 15.0
    """A neighbour's hints are used for this long after its last peers message."""
    exchange_max_signals_per_s: int = 20
    """Signals taken from one neighbour per second (relayed or for us); the rest are dropped."""

    start_behind_chunks: int = 1
    """A viewer starts this many chunks behind the newest it hears of, as a safety margin."""
    start_past_peers_chunks: int = 1
    """...but once a neighbour other than the source holds a chunk whole, it starts this many
    chunks past the newest such chunk (one that is crossing the swarm now), if it has heard of
    that one..."""
    start_settle_s: float = 0.5
    start_give_up_chunks: int = 2
    """Before playout, once this many chunks after the start chunk are complete and it is not,
    playout starts at the first of them: the start chunk may be one that only the source still
    holds, whose copy budget is spent (test bed: two viewers downloaded 8 chunks and never
    played)."""
    """...within this long of the first news (buffer maps first, then haves of fresher chunks)."""
    fetch_ahead_chunks: int = 8
    urgent_s: float = 1.5
    """A chunk whose playout deadline is closer than this is urgent: fetched first, by anyone."""
    keep_behind_chunks: int = 6
    """Chunks kept after playing them, for neighbours that are behind us."""
    max_ahead_chunks: int = 64
    """A seq further than this beyond the newest verified one is a protocol error."""

    request_timeout_s: float = 1.5
    """No progress on a request for this long beyond the neighbour's measured response time
    (Neighbour.expected_wait_s): cancel what is left and ask someone else (that neighbour is a
    last resort for the chunk for twice this long: Neighbour.gave_up)."""
    move_after_s: float = 0.2
    """Pieces asked of a peer that sent nothing of them for this long beyond its slow response
    time (the upper quartile of its recent ones: stuck behind others' requests there, not just
    queued) are asked of another holder with room instead, and cancelled there. A fixed 0.2 s
    moved nearly every piece asked across a 300 ms home-link round trip before it could come:
    duplicates ran at 40-70% of the useful bytes on the test bed. Beyond its usual (lower
    quartile) response instead, 91% of the moves in the bed model were of pieces already sent
    (a duplicate each): duplicates 15% of the useful bytes, and more late chunks for it."""
    move_max_response_s: float = 0.2
    """...but only from a holder whose response time is below this: a cancel takes about as
    long to reach a slower one as the piece takes to come, so a move there mostly fetches the
    piece twice (test bed, 0.1-0.6 s responses: moving from every holder cost 20-45% of the
    useful bytes in duplicates and mean continuity 0.87; from none, 0.97-0.98)."""
    initial_response_s: float = 0.25
    """A neighbour's response time until one is measured (a home link's round trip, queue
    included)."""
    pipeline_s: float = 1.0
    """Pieces in flight per neighbour = measured throughput x this (in bytes, then pieces)."""
    min_inflight_bytes: int = 16384
    """Floor of the in-flight limit before any throughput is measured (then one piece). 32 KiB
    made chunks cross the swarm faster but cost continuity (docs/BENCHMARKS.md, Simulation,
    2026-11-25, 032d1ef)."""
    upload_slots: int = 2
    """Requests served at a time, most urgent (lowest seq, then oldest) first: the uplink goes
    to the chunk nearest its deadline rather than being shared by everyone who asked."""
    busy_retry_s: float = 0.5
    """After an absent, do not ask that neighbour for that chunk again for this long."""
    target_lag_s: float = 2.5
    """Play each chunk this long after the source released it (when clocks agree)."""
    start_margin_s: float = 1.0
    """Playout begins at least this long after the start chunk completes, however old it is (a
    viewer joining a swarm whose chunks take longer than target_lag_s to cross it)."""
    start_sooner_min_lag_s: float = 3.0
    """...but once the chunk after the start chunk is complete too, playout begins then, with
    at least this much lag (Playback.start_sooner). Test bed, 17 runs against 10: startup p50
    2.90 s against 3.08 on the mean, lag p95 the same, late chunks 1.9 a run against 1.5; bed
    model, 6 layouts: late or missed 5 -> 11. With the floor at target_lag_s (2.5 s) the model
    had 15 (docs/BENCHMARKS.md, Real networks)."""
    lag_margin_s: float = 0.7
    """A chunk completing closer than this to its deadline slows playout down (the lag adapts
    to how long chunks take to cross the swarm; see Playback). With stuck pieces moved, chunks
    complete within a narrower spread of times, and 0.7 s keeps continuity (1,000 peers: lag
    p95 6.53 -> 6.00 s, continuity 1.000 -> 0.999; 0.5 s: 5.87 s, 0.996)."""
    lag_step_s: float = 0.5
    """At most this much lag added per close call (a player slows down briefly to absorb it)."""
    stall_step_s: float = 0.5
    """A chunk missing at its deadline stalls playout this long at a time..."""
    max_stall_s: float = 2.0
    """...up to this long in all; then it is skipped."""
    max_lag_added_s: float = 10.0
    """Playout is never pushed back further than this beyond where it started."""
    catch_up_margin_s: float = 1.5
    catch_up_step_s: float = 0.2
    catch_up_chunks: int = 4
    """After catch_up_chunks chunks in a row completed catch_up_margin_s or more before their
    deadlines, playout speeds up by catch_up_step_s per chunk (never below target_lag_s)."""
    upload_min_uplink_share: float = 0.5
    """A viewer whose uplink, with work, delivers less than this share of the stream's rate (the
    best of five seconds in which data waited, of three for the first verdict:
    neighbours.DeliveredUplinkMeter, fed by the driver) stops uploading: it tells its
    neighbours in a new hello, serves the requests it has queued and answers later ones
    absent. Its requests, haves and SACKs then have the uplink to themselves, and no first
    copy waits behind it. Test bed, the 0.5x-uplink viewer
    kept from uploading by hand (two runs): continuity 1.000 for every viewer and lag p95
    4.89 s, against 0.93-0.98 and 5.6-9.6 s; there the 1x viewers delivered 0.58x the stream
    or more, the 0.5x one 0.44x at most. 0: never."""
    max_serve_queue: int = 64
    """Outstanding requests a neighbour may have on us; more is a protocol error (flooding)."""
    stall_strikes: int = 3
    """Timeouts in a row (on requests it could have served at once) before it is dropped."""
    have_interval_s: float = 0.05
    """At most one have per chunk per neighbour this often: the pieces verified meanwhile
    travel together in the next one (the first goes at once). 0.1 s cost every hop ~0.04 s of
    waiting (300 peers x 3 seeds: lag p95 5.57 -> 5.14 s at 0.05 s; 0.025 s gained nothing)."""
    have_wire_bytes: int = 100
    """What one have costs on the uplink: its own packet (IP, UDP, DTLS and SCTP headers, about
    80 bytes, for a payload of a few): a data channel sends a small message alone."""
    have_uplink_share: float = 0.1
    """Haves slow down (up to max_have_interval_s) so that they take at most this share of the
    uplink as measured (SwarmPeer.have_interval_s). Every 0.05 s to 8 neighbours is ~130
    kbit/s: a third of a 0.4 Mbit/s home uplink, which then had no room for the requests of its
    own downloads (on the test bed, every 0.25 s raised mean continuity from ~0.75 to 0.84)."""
    max_have_interval_s: float = 0.5
    backlog_age_s: float = 0.2
    """The uplink counts as measured while a request has waited this long in our upload queue
    (see neighbours.UplinkMeter)."""
    push_headers: bool = True
    """Send a chunk's signed header along with the first have of it to a neighbour that shows
    no sign of holding it (see SwarmPeer._send_have)."""

    source_announce_delay_s: float = 0.6
    """Super-seeding: the source first advertises each piece of a fresh chunk to one uploading
    neighbour (different pieces to different neighbours); after this delay it advertises the
    whole chunk to everyone, as a fallback within its copy budget."""
    source_seed_proof_s: float = 2.0
    """Super-seeding goes only to neighbours that joined less than this ago or whose haves
    showed, within this time, pieces the source never sent them (they are fed by peers, so
    they are linked into the swarm): a neighbour every peer dropped (a liar) cannot spread a
    first copy, and a first copy stuck there costs every viewer that piece."""
    source_spread_holders: int = 2
    """A first copy counts as spreading once this many neighbours announced that piece without
    getting it from us; until then, after source_announce_delay_s, it is offered to one more
    linked uploader (see SwarmPeer._reseed_stuck). One was too few: the first holder's first
    downstream copy often sits behind a slow uplink too."""
    source_seed_response_floor_s: float = 0.05
    """First copies go to uploaders in proportion to 1 / how soon they ask for what they are
    offered (streamer.swarm.seeding), counted as at least this: a neighbour a few ms away is not
    given every first copy. Test bed in the simulator, 6 seeds: continuity min 0.932 -> 0.968,
    lag p95 7.07 -> 6.44 s against offering in turn; 1 / response squared: 0.961, 5.89 s, but
    worse at 150 peers in the default simulator."""
    source_reseed_interval_s: float = 0.4
    source_reseed_window_s: float = 3.0
    """After the whole-chunk announce, the source looks again every reseed interval, while the
    chunk is younger than the window, for first copies that still have not spread, and offers
    each to one more linked uploader: a second first copy can land at a peer that leaves, or
    behind a slow uplink too (300 peers, seed 2: one piece reached 3 peers, 282 missed it)."""
    source_max_share: float = 0.5
    """No neighbour gets more than this share of a chunk's copy budget: one that asks for
    everything (a lone viewer, or a liar every peer dropped) leaves the rest for the urgent
    requests of others (20 peers with a liar, seed 3: it took the whole budget, then a piece
    whose first copy it held reached nobody in time)."""
    source_max_copies: float = 1.9
    """The source uploads at most this many copies of a chunk, however large the audience."""
    source_keep_chunks: int = 16
    max_held_piece_bytes: int = 8 * 1024 * 1024
    """Pieces held aside until their chunk's header is stored: one asked of a neighbour may
    come before the header (pieces travel unordered; the header, in order, may wait for a
    retransmission), and in the page while the header's signature is checked."""


def relay_config(config: SwarmConfig) -> SwarmConfig:
    """A relay's config: it keeps as many chunks behind its playout as the source keeps. A
    viewer behind a relay fetches what the relay still holds; with a viewer's keep_behind_chunks,
    one that started at 8.8 s of lag on a slow link (test bed, 30 viewers of one relay,
    2026-12-07) asked for chunks the relay had just evicted, got absents, and played 3 of 30."""
    keep = max(config.keep_behind_chunks, config.source_keep_chunks)
    return replace(config, keep_behind_chunks=keep)
