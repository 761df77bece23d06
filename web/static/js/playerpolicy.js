// Pure decisions of the MSE player: where to start, how to keep lag bounded, when to jump a gap,
// what to trim. No DOM, no timers, no MediaSource: plain numbers in, a decision out, so that
// `node --test` checks them (tests/js/page.test.mjs) and player.js only carries them out.
//
// `ranges` is always a sorted list of [start_s, end_s] pairs (a TimeRanges copied to an array).

export const DEFAULT_POLICY = Object.freeze({
  /** Media kept ahead of the playhead in steady state (the live lag we aim for, in media time). */
  targetBufferS: 1.5,
  /** Ahead of target by more than this: play faster to catch up. */
  speedUpAboveS: 1.0,
  /** Ahead of target by more than this: seek straight to the target instead. */
  seekAboveS: 4.0,
  /** Catch-up playback rate (small enough not to be noticed). */
  catchUpRate: 1.1,
  /**
   * Once the swarm core plays, the picture keeps the core's lag plus this (followLag): a chunk
   * complete at the core's deadline is appended and decoded before the picture needs it. The
   * core's lag is what the swarm delivers in time; a picture ahead of it stalls on every chunk
   * that comes late for it but in time for the core (test bed, 2026-12-06: 1-5 stalls a minute
   * per page and chunks the player skipped, at core continuity 1.000)...
   */
  followMarginS: 0.3,
  /** ...within this of it, normal speed; behind, catchUpRate; ahead, this rate. */
  followToleranceS: 0.2,
  slowDownRate: 0.9,
  /**
   * A chunk missing while later ones wait is skipped once the playhead ran dry this long after
   * they came; following the core, coreSkipWaitS (the core stalls up to 2 s, max_stall_s,
   * before it gives a chunk up, and then says so: MsePlayer.skipChunk).
   */
  skipWaitS: 0.5,
  coreSkipWaitS: 2.5,
  /**
   * A gap in the buffer at most this long is jumped over when the playhead reaches it. Chunks
   * are appended in order, so a hole with media after it is never filled: an input that stalled
   * or a chunk the swarm skipped. Only a jump further than this (a clock gone wrong) waits.
   */
  maxGapJumpS: 120.0,
  /**
   * The chunk length the figures above are tuned for. The buffer ahead swings by one chunk as
   * chunks are appended whole: a longer chunk (an encoder's 2-10 s GOPs) adds its extra length
   * to the buffer aimed for, so that it is neither seeked over nor played out before the next.
   */
  nominalChunkS: 1.0,
  /** Media kept behind the playhead (seeking back a bit works; memory stays bounded). */
  keepBehindS: 10.0,
  /** Trim only when at least this much can go, so remove() runs rarely. */
  trimMinS: 5.0,
});

/** Copy a TimeRanges (or anything with length/start/end) into [[start, end], ...]. */
export function rangesOf(timeRanges) {
  const out = [];
  for (let i = 0; i < timeRanges.length; i += 1) out.push([timeRanges.start(i), timeRanges.end(i)]);
  return out;
}

/** The range holding `t` (with a small tolerance), or null. */
export function rangeAt(ranges, t, toleranceS = 0.1) {
  for (const r of ranges) {
    if (t >= r[0] - toleranceS && t < r[1]) return r;
  }
  return null;
}

/** The buffer to aim for when the stream's recent chunks last up to `chunkS` seconds. */
export function targetBufferS(chunkS, policy = DEFAULT_POLICY) {
  return policy.targetBufferS + Math.max(0, (chunkS ?? 0) - policy.nominalChunkS);
}

/**
 * Where to put the playhead when playback starts: the target buffer (see targetBufferS) before
 * the end of the newest buffered range, but never before that range's start (a late joiner
 * starts near the live edge).
 */
export function startPosition(ranges, policy = DEFAULT_POLICY, chunkS = null) {
  if (!ranges.length) return null;
  const [start, end] = ranges[ranges.length - 1];
  return Math.max(start, end - targetBufferS(chunkS, policy));
}

/**
 * Keep lag bounded. Returns {seekTo: number|null, rate: number}. The buffer ahead of the playhead is
 * how far behind the newest media we are: too much and we speed up, far too much and we seek.
 * chunkS: the longest recent chunk (see targetBufferS).
 */
export function catchUp(ranges, currentTimeS, policy = DEFAULT_POLICY, chunkS = null) {
  const here = rangeAt(ranges, currentTimeS);
  if (!here) return { seekTo: null, rate: 1 };
  const liveEnd = ranges[ranges.length - 1][1];
  const aheadS = liveEnd - currentTimeS;
  const targetS = targetBufferS(chunkS, policy);
  const excessS = aheadS - targetS;
  if (excessS > policy.seekAboveS) {
    const last = ranges[ranges.length - 1];
    return { seekTo: Math.max(last[0], liveEnd - targetS), rate: 1 };
  }
  if (excessS > policy.speedUpAboveS) return { seekTo: null, rate: policy.catchUpRate };
  return { seekTo: null, rate: 1 };
}

/**
 * How far the picture is behind where it aims: the swarm core's lag plus followMarginS.
 * `videoLagS`: now - release of the media shown; `targetLagS`: the lag the core played its last
 * chunk at. Null when either is unknown (not following).
 */
export function behindCoreS(videoLagS, targetLagS, policy = DEFAULT_POLICY) {
  if (typeof videoLagS !== "number" || typeof targetLagS !== "number") return null;
  return videoLagS - (targetLagS + policy.followMarginS);
}

/**
 * Keep the picture at the swarm core's lag (see behindCoreS). Returns {seekByS: number|null,
 * rate: number}, or null when there is nothing to follow (catchUp decides then). Behind it:
 * faster, or far behind: a seek forward by the difference; ahead of it: slower, never a seek
 * back (media behind the playhead may be trimmed).
 */
export function followLag(videoLagS, targetLagS, policy = DEFAULT_POLICY) {
  const behindS = behindCoreS(videoLagS, targetLagS, policy);
  if (behindS === null) return null;
  if (behindS > policy.seekAboveS) return { seekByS: behindS, rate: 1 };
  if (behindS > policy.followToleranceS) return { seekByS: null, rate: policy.catchUpRate };
  if (behindS < -policy.followToleranceS) return { seekByS: null, rate: policy.slowDownRate };
  return { seekByS: null, rate: 1 };
}

/**
 * The playhead sits in (or at the end of) a hole while later media is buffered: the chunk in
 * between will not come. Returns the time to jump to, or null when there is nothing to jump to.
 */
export function gapJump(ranges, currentTimeS, policy = DEFAULT_POLICY) {
  const here = rangeAt(ranges, currentTimeS, 0);
  if (here && here[1] - currentTimeS > 0.25) return null; // media to play right here
  for (const [start] of ranges) {
    if (start > currentTimeS && start - currentTimeS <= policy.maxGapJumpS) return start + 0.01;
  }
  return null;
}

/** [start, end] to remove() behind the playhead, or null when not worth it yet. */
export function trimRange(ranges, currentTimeS, policy = DEFAULT_POLICY) {
  if (!ranges.length) return null;
  const first = ranges[0][0];
  const end = currentTimeS - policy.keepBehindS;
  if (end - first < policy.trimMinS) return null;
  return [first, end];
}

/** Seconds of media buffered from the playhead on, within its contiguous range. */
export function bufferAheadS(ranges, currentTimeS) {
  const here = rangeAt(ranges, currentTimeS, 0);
  return here ? here[1] - currentTimeS : 0;
}
