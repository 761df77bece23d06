// Which uploader gets the first copy of each piece of a fresh chunk (source only). Pure.
//
// The same rules as the Python core's streamer/swarm/seeding.py, held together by
// tests/scenarios/seeding.json: an uploader's weight is 1 / its seed response (how soon it asks
// for the pieces it was offered: a request waits behind its uploads just as its forwarded pieces
// will), at least floorS; one never measured gets the median of those measured (priorS when none
// is). Pieces go out by smooth weighted round robin over uploaders in peer-id order, credit
// carried from chunk to chunk.

/**
 * Weight per uploader (in the map's order) from its seed response, null if unmeasured.
 * @param {Map<string, number|null>} responsesS
 * @returns {Map<string, number>}
 */
export function seedWeights(responsesS, floorS, priorS) {
  const known = [...responsesS.values()].filter((r) => r !== null).sort((a, b) => a - b);
  const unknownS = known.length ? known[Math.floor(known.length / 2)] : priorS;
  const out = new Map();
  for (const [pid, r] of responsesS) out.set(pid, 1 / Math.max(floorS, r === null ? unknownS : r));
  return out;
}

/**
 * The uploader of each piece's first copy; credit (Map uploader -> credit) is carried over
 * between chunks and updated here (uploaders no longer weighed are dropped from it).
 * @param {Map<string, number>} weights
 * @param {number} pieceCount
 * @param {Map<string, number>} credit
 * @returns {string[]}
 */
export function assignFirstCopies(weights, pieceCount, credit) {
  for (const pid of [...credit.keys()]) if (!weights.has(pid)) credit.delete(pid);
  let total = 0;
  for (const weight of weights.values()) total += weight;
  const out = [];
  for (let n = 0; n < pieceCount; n++) {
    let best = null;
    for (const [pid, weight] of weights) {
      credit.set(pid, (credit.get(pid) ?? 0) + weight);
      if (best === null || credit.get(pid) > credit.get(best)) best = pid;
    }
    if (best === null) break;
    credit.set(best, credit.get(best) - total);
    out.push(best);
  }
  return out;
}
