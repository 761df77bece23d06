// Which chunk to ask of which neighbour: a pure function (streamer/swarm/scheduler.py, ported).
//
// Policy: chunks near their playout deadline first (urgent, by deadline), then rarest first further
// ahead (fewest holders, then lowest seq). A chunk goes to one neighbour at a time (each chunk is
// downloaded about once per peer: no flooding). Peers are preferred over the source; the source is
// asked only when no peer neighbour holds the chunk, or when the chunk is urgent and every peer
// that holds it is busy. Among holders: those with the whole chunk first, then the most spare
// capacity.

/** A small seeded PRNG (mulberry32): same seed, same schedule; returns floats in [0, 1). */
export function seededRandom(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function shuffle(items, rng) {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    [items[i], items[j]] = [items[j], items[i]];
  }
}

/**
 * Assign wanted chunks to neighbours; returns [[seq, peerId]], most pressing first.
 *
 * wants: [{seq, deadlineS, holders: string[], completeHolders: Set, sourceHolders: string[],
 * estimateBytes}]. capacityBytes (Map peerId -> spare in-flight bytes) is consumed as chunks are
 * assigned.
 */
export function planRequests(wants, capacityBytes, now, urgentS, rng) {
  const cap = (h) => capacityBytes.get(h) ?? 0;
  const urgent = wants.filter((w) => w.deadlineS - now <= urgentS);
  urgent.sort((a, b) => a.deadlineS - b.deadlineS);
  const later = wants.filter((w) => w.deadlineS - now > urgentS);
  const holderCount = (w) => w.holders.length + w.sourceHolders.length;
  later.sort((a, b) => holderCount(a) - holderCount(b) || a.seq - b.seq);
  const plan = [];
  for (const want of urgent.concat(later)) {
    const isUrgent = want.deadlineS - now <= urgentS;
    let pool = want.holders.filter((h) => cap(h) > 0);
    if (pool.length === 0 && (want.holders.length === 0 || isUrgent)) {
      pool = want.sourceHolders.filter((h) => cap(h) > 0);
    }
    if (pool.length === 0) continue;
    shuffle(pool, rng);
    let best = pool[0];
    const rank = (h) => [want.completeHolders.has(h) ? 0 : 1, -cap(h)];
    for (const h of pool.slice(1)) {
      const [r1, c1] = rank(h);
      const [r0, c0] = rank(best);
      if (r1 < r0 || (r1 === r0 && c1 < c0)) best = h;
    }
    capacityBytes.set(best, cap(best) - want.estimateBytes);
    plan.push([want.seq, best]);
  }
  return plan;
}
