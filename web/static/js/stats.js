// The page's figures: rate meters, the `window.streamer.stats` object and the neighbour-graph
// layout. Pure (no DOM, time passed in) so `node --test` checks it; ui.js draws what it returns.
//
// `window.streamer.stats` uses the field names of `streamer watch --stats-json` (startup_s,
// continuity, lag_s_p50, lag_s_p95, chunks_played, chunks_late, chunks_missed, lag_added_s,
// stall_s, bytes_from_source, bytes_from_peers, bytes_uploaded) so a script compares a page and a
// headless watcher directly.

/** Bytes over a sliding window -> bits per second. */
export class RateMeter {
  constructor(windowS = 3) {
    this.windowS = windowS;
    this.samples = []; // [timeS, bytes]
  }

  add(bytes, nowS) {
    this.samples.push([nowS, bytes]);
    this._expire(nowS);
  }

  rateBps(nowS) {
    this._expire(nowS);
    let total = 0;
    for (const [, b] of this.samples) total += b;
    return (total * 8) / this.windowS;
  }

  _expire(nowS) {
    const cutoff = nowS - this.windowS;
    let i = 0;
    while (i < this.samples.length && this.samples[i][0] < cutoff) i += 1;
    if (i) this.samples.splice(0, i);
  }
}

/** A counter that only grows (core totals): feeds its increments into a RateMeter. */
export class CounterRate {
  constructor(windowS = 3) {
    this.meter = new RateMeter(windowS);
    this.last = null;
  }

  update(total, nowS) {
    if (this.last !== null && total > this.last) this.meter.add(total - this.last, nowS);
    this.last = total;
    return this.meter.rateBps(nowS);
  }
}

/** Share of downloaded stream bytes that came from peers rather than the broadcaster. */
export function peerShare(bytesFromPeers, bytesFromSource) {
  const total = bytesFromPeers + bytesFromSource;
  return total > 0 ? bytesFromPeers / total : null;
}

/**
 * The object exposed as window.streamer.stats. `core` is the swarm core's stats() (snake_case, as
 * in Python); `player` the MsePlayer's stats(); `extra` the driver's own figures.
 */
export function assembleStats(core, player, extra) {
  const c = core ?? {};
  const p = player ?? {};
  const fromSource = c.bytes_from_source ?? 0;
  const fromPeers = c.bytes_from_peers ?? 0;
  return {
    startup_s: p.first_frame_s ?? c.startup_s ?? null,
    continuity: c.continuity ?? null,
    lag_s_p50: c.lag_s_p50 ?? null,
    lag_s_p95: c.lag_s_p95 ?? null,
    chunks_played: c.chunks_played ?? 0,
    chunks_late: c.chunks_late ?? 0,
    chunks_missed: c.chunks_missed ?? 0,
    lag_added_s: c.lag_added_s ?? 0,
    stall_s: c.stall_s ?? 0,
    not_on_time: c.not_on_time ?? [],
    bytes_from_source: fromSource,
    bytes_from_peers: fromPeers,
    bytes_uploaded: c.bytes_uploaded ?? 0,
    upload_stopped_s: c.upload_stopped_s ?? null,
    uplink_delivered_bps: c.uplink_delivered_bps ?? null,
    peer_share: peerShare(fromPeers, fromSource),
    core_startup_s: c.startup_s ?? null,
    startup_phases: c.startup_phases ?? null,
    video_lag_s: p.video_lag_s ?? null,
    behind_core_s: p.behind_core_s ?? null,
    buffer_s: p.buffer_s ?? null,
    current_time_s: p.current_time_s ?? null,
    frames_decoded: p.frames_decoded ?? null,
    frames_dropped: p.frames_dropped ?? null,
    stalls: p.stalls ?? 0,
    stalled_s: p.stalled_s ?? 0,
    chunks_appended: p.chunks_appended ?? 0,
    chunks_skipped: p.chunks_skipped ?? 0,
    player_error: p.error ?? null,
    exchange_hints: c.exchange_hints ?? 0,
    signals_relayed: c.signals_relayed ?? 0,
    signals_dropped: c.signals_dropped ?? 0,
    ...extra,
  };
}

/**
 * Positions for the neighbour graph: this page in the middle, neighbours on a circle (the
 * broadcaster on top), each with its role. Deterministic for a given neighbour list.
 */
export function graphLayout(neighbours, radius = 80) {
  const order = { broadcaster: 0, source: 0, relay: 1, viewer: 2 };
  const sorted = [...neighbours].sort(
    (a, b) => (order[a.role] ?? 3) - (order[b.role] ?? 3) || (a.peerId < b.peerId ? -1 : 1),
  );
  const n = sorted.length;
  return sorted.map((nb, i) => {
    const angle = -Math.PI / 2 + (2 * Math.PI * i) / Math.max(1, n);
    return { ...nb, x: radius * Math.cos(angle), y: radius * Math.sin(angle) };
  });
}

export function formatRate(bps) {
  if (bps === null || bps === undefined || Number.isNaN(bps)) return "-";
  if (bps >= 1e6) return `${(bps / 1e6).toFixed(2)} Mbit/s`;
  return `${Math.round(bps / 1e3)} kbit/s`;
}

export function formatBytes(n) {
  if (n >= 1 << 20) return `${(n / (1 << 20)).toFixed(1)} MB`;
  if (n >= 1 << 10) return `${Math.round(n / (1 << 10))} KB`;
  return `${n} B`;
}

export function formatSeconds(s) {
  return s === null || s === undefined || Number.isNaN(s) ? "-" : `${s.toFixed(1)} s`;
}

export function formatPercent(x) {
  return x === null || x === undefined || Number.isNaN(x) ? "-" : `${(100 * x).toFixed(1)} %`;
}
