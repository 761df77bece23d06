// Which pieces to ask of which neighbour: a pure function, the port of streamer/swarm/scheduler.py.
//
// Policy (docs/protocol.md, Behaviour, "Pull"), piece by piece:
// - chunks in order: urgent ones (deadline within urgentS) by deadline, then the rest rarest first
//   (fewest holders, then lowest seq);
// - without the chunk's verified header, ask one holder for the header and one piece;
// - each missing piece nobody is fetching for us goes to one holder (and so does a piece stuck
//   in a holder's queue, Want.stuck, but never to that holder again), chosen by tier:
//   1. a peer known to hold that piece (whole chunk, or the piece's bit in its last have), or the
//      source when it advertised that very piece to us (super-seeding: we are its first receiver);
//   2. only for an urgent chunk: a peer that is receiving it and verified its header before we did
//      (it forwards pieces as they arrive; "before us" orders peers in time, so two peers never
//      wait on each other);
//   3. the source holding the whole chunk: only when the chunk is urgent, or when no uploading
//      peer is linked to us (peers will bring the rest: the source's copy budget is kept for
//      the urgent requests of neighbours about to stall);
//   within a tier, the holder with the most spare room (in pieces), ties broken at random; a
//   holder without room is skipped, except the source for a piece it advertised to us alone;
// - each assignment uses one piece of the holder's room (in-flight limit from measured throughput).
// The split spreads one chunk over several holders, so it downloads from all of them in parallel.
//
// Shapes (plain objects, Python's dataclasses in camelCase):
//   Holder {peerId, knownMask, earlier = false, source = false}
//     knownMask: bit i set = it holds piece i for sure; ALL_HELD (-1n, every bit) = the whole
//     chunk. A BigInt, since a chunk may have up to 1024 pieces (a Number is accepted too).
//   Want {seq, deadlineS, missing: number[], needHeader, holders: Holder[], holderCount?,
//         stuck = []}
//     missing: pieces we neither hold nor asked anyone for (empty while needHeader), and
//       pieces stuck at a neighbour;
//     needHeader: we hold no verified header and nobody is fetching it for us;
//     holderCount: how many neighbours hold some of it, for rarest-first (default: holders
//       .length); the caller may leave out of holders the peers without room;
//     stuck: [piece, peerId] for missing pieces already asked of a neighbour that has sent
//       nothing of them for a while: they may move to another holder, never to that one.
//   Ask {seq, peerId, pieces: number[] (ascending), wantHeader}

/** knownMask of a neighbour holding the whole chunk (every bit set, like Python's -1). */
export const ALL_HELD = -1n;

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

/** Is bit `index` of a BigInt mask set? (-1n has every bit set.) */
export function hasBit(mask, index) {
  return ((BigInt(mask) >> BigInt(index)) & 1n) === 1n;
}

/** Bits (array of booleans, a have's field) -> BigInt mask. */
export function maskOf(bits) {
  let mask = 0n;
  bits.forEach((held, i) => {
    if (held) mask |= 1n << BigInt(i);
  });
  return mask;
}

/** Index of the lowest set bit (0 for none, or for ALL_HELD): the piece fetched with a header. */
export function lowestBit(mask) {
  const m = BigInt(mask);
  if (m <= 0n) return 0;
  return (m & -m).toString(2).length - 1;
}

/** 0 = best; null = this holder is not to be asked for this piece (index -1: any piece). */
function tier(holder, index, urgent, peersLinked) {
  const mask = BigInt(holder.knownMask);
  const known = index < 0 ? mask !== 0n : hasBit(mask, index);
  if (holder.source) {
    if (mask === ALL_HELD) return urgent || !peersLinked ? 2 : null;
    return known ? 0 : null;
  }
  if (known) return 0;
  return holder.earlier && urgent ? 1 : null;
}

/**
 * Would tier rank holder for some piece of missingMask (0n: for the header)? The caller leaves
 * out of a Want the holders that could serve none of it: in a busy swarm most neighbours with
 * room hold only pieces we have or asked for already.
 */
export function mayServe(holder, missingMask, urgent, peersLinked) {
  const mask = BigInt(holder.knownMask);
  const known = missingMask === 0n ? mask !== 0n : (mask & missingMask) !== 0n;
  if (holder.source) return mask === ALL_HELD ? urgent || !peersLinked : known;
  return known || (holder.earlier && urgent);
}

function pick(holders, index, urgent, peersLinked, roomPieces, rng, notFrom = null) {
  let best = null;
  let bestKey = null;
  for (const holder of holders) {
    if (holder.peerId === notFrom) continue;
    const room = roomPieces.get(holder.peerId) ?? 0;
    const t = tier(holder, index, urgent, peersLinked);
    if (t === null) continue;
    if (room <= 0 && !(holder.source && t === 0)) {
      // A first copy the source advertised to us alone is asked at once, room or not: nobody
      // else can fetch it, and the source serves first copies first.
      continue;
    }
    const key = [t, -room, rng()];
    if (
      bestKey === null ||
      key[0] < bestKey[0] ||
      (key[0] === bestKey[0] &&
        (key[1] < bestKey[1] || (key[1] === bestKey[1] && key[2] < bestKey[2])))
    ) {
      best = holder;
      bestKey = key;
    }
  }
  return best;
}

/** How many neighbours hold some of the chunk (holderCount; default: its holders). */
const rarity = (want) => want.holderCount ?? want.holders.length;

/**
 * Assign wanted pieces to neighbours; returns the Asks, most pressing first.
 * roomPieces (Map peerId -> how many more pieces it may have in flight for us) is consumed.
 * peersLinked: an uploading neighbour other than the source is linked to us (with room or not),
 * so the source is asked only for urgent chunks and its first copies.
 */
export function planPieces(wants, roomPieces, now, urgentS, rng, peersLinked = true) {
  const urgent = wants.filter((w) => w.deadlineS - now <= urgentS);
  urgent.sort((a, b) => a.deadlineS - b.deadlineS);
  const later = wants.filter((w) => w.deadlineS - now > urgentS);
  later.sort((a, b) => rarity(a) - rarity(b) || a.seq - b.seq);
  const asks = [];
  for (const want of urgent.concat(later)) {
    const isUrgent = want.deadlineS - now <= urgentS;
    if (want.needHeader) {
      const best = pick(want.holders, -1, isUrgent, peersLinked, roomPieces, rng);
      if (best !== null) {
        roomPieces.set(best.peerId, roomPieces.get(best.peerId) - 1);
        asks.push({
          seq: want.seq,
          peerId: best.peerId,
          pieces: [lowestBit(best.knownMask)],
          wantHeader: true,
        });
      }
      continue;
    }
    const chosen = new Map();
    const stuckAt = new Map(want.stuck ?? []);
    for (const index of want.missing) {
      const notFrom = stuckAt.get(index) ?? null;
      const best = pick(want.holders, index, isUrgent, peersLinked, roomPieces, rng, notFrom);
      if (best === null) continue;
      roomPieces.set(best.peerId, roomPieces.get(best.peerId) - 1);
      if (!chosen.has(best.peerId)) chosen.set(best.peerId, []);
      chosen.get(best.peerId).push(index);
    }
    for (const [peerId, pieces] of chosen) {
      asks.push({ seq: want.seq, peerId, pieces, wantHeader: false });
    }
  }
  return asks;
}
