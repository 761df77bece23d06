// Which path a connection took (host, srflx, prflx or relay) and its round-trip time, read from
// RTCPeerConnection.getStats(): the same figures streamer/transport/ice_path.py reports for aiortc
// peers, under the same names (pair_type, local_candidate_type, remote_candidate_type, protocol,
// rtt_ms), so a page and a headless peer compare directly.
//
// Pure (a stats report in, a plain object out) so `node --test` checks it with recorded reports.

/** Candidate types from the most to the least indirect: a pair is named after its more indirect end. */
export const CANDIDATE_TYPES = ["relay", "srflx", "prflx", "host"];

export function pairType(localType, remoteType) {
  for (const kind of CANDIDATE_TYPES) {
    if (kind === localType || kind === remoteType) return kind;
  }
  return localType ?? remoteType ?? null;
}

function entries(report) {
  if (!report) return [];
  if (typeof report.values === "function") return [...report.values()];
  return Object.values(report);
}

/**
 * The selected candidate pair of a getStats() report: the transport's selectedCandidatePairId
 * (Chromium, Safari), else a pair flagged `selected` (Firefox), else a nominated pair that
 * succeeded. null before ICE has one.
 */
export function selectedCandidatePair(report) {
  const all = entries(report);
  const byId = new Map(all.map((s) => [s.id, s]));
  for (const s of all) {
    if (s.type === "transport" && s.selectedCandidatePairId) {
      const pair = byId.get(s.selectedCandidatePairId);
      if (pair) return pair;
    }
  }
  const pairs = all.filter((s) => s.type === "candidate-pair");
  return (
    pairs.find((p) => p.selected === true) ??
    pairs.find((p) => p.nominated === true && p.state === "succeeded") ??
    null
  );
}

/** `{pair_type, local_candidate_type, remote_candidate_type, protocol, rtt_ms}` or null. */
export function icePathFromStats(report) {
  const pair = selectedCandidatePair(report);
  if (!pair) return null;
  const byId = new Map(entries(report).map((s) => [s.id, s]));
  const local = byId.get(pair.localCandidateId);
  const remote = byId.get(pair.remoteCandidateId);
  if (!local || !remote) return null;
  const rtt = pair.currentRoundTripTime;
  return {
    pair_type: pairType(local.candidateType, remote.candidateType),
    local_candidate_type: local.candidateType ?? null,
    remote_candidate_type: remote.candidateType ?? null,
    protocol: local.protocol ?? null,
    rtt_ms: typeof rtt === "number" && Number.isFinite(rtt) ? Math.round(rtt * 1e5) / 100 : null,
  };
}

/** "relay · 12 ms" for the neighbour table. */
export function formatPath(path) {
  if (!path) return "-";
  return path.rtt_ms === null ? path.pair_type : `${path.pair_type} · ${Math.round(path.rtt_ms)} ms`;
}
