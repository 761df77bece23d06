// The playout model: where a viewer starts, when each chunk is due, played or skipped, lag.
//
// The same rules as streamer/swarm/playback.py (and so as `streamer watch`): start
// `startBehindChunks` behind the newest seq heard of; once the start chunk is complete, playback
// begins targetLagS after the source released it (not before now + startMarginS, unless the
// chunk after it completes first, and then with at least startSoonerMinLagS of lag; not after
// now + targetLagS);
// chunk seq is due at playStart + (its media start - the start chunk's media start); at its
// deadline a chunk is played if complete, otherwise skipped (never stall forever).
//
// The lag adapts to the swarm, as a live player's does: a chunk completing less than lagMarginS
// before its deadline slows playout down (pushes every later deadline back by at most lagStepS),
// and a chunk missing at its deadline stalls playout in stallStepS steps, up to maxStallS, before
// it is skipped. A stalled chunk counts against continuity like a skipped one; the lag added never
// exceeds maxLagAddedS. When the last catchUpChunks chunks all completed at least catchUpMarginS
// early, playout speeds up (deadlines come catchUpStepS closer), never below targetLagS. Zero
// steps (the defaults) keep a fixed lag.
//
// Chunks may be of any length (an encoder's GOPs are 1-10 s, scene cuts, a stalled input). A chunk
// is released when its last frame is shot, so a long one comes later than the media clock says: a
// missing chunk whose header shows it was released less than the playout lag before its deadline
// re-anchors playout (every later deadline moves back until it gets that lag) instead of stalling
// or skipping; and a chunk past the live edge (no header of it or of any later chunk has arrived)
// is waited for, never skipped, since nothing after it exists yet. Re-anchoring is the source's
// timing, not the swarm's: it counts in reanchoredS, not in stalls or lagAddedS.
// Pure: `now` (seconds) is passed in; no timers, no DOM.

export const MAX_NOT_ON_TIME = 32;

export class Playback {
  constructor({
    chunkDurationS,
    startBehindChunks,
    joinedS,
    targetLagS = 0,
    startMarginS = 0,
    startSoonerMinLagS = 0,
    lagMarginS = 0,
    lagStepS = 0,
    stallStepS = 0,
    maxStallS = 0,
    maxLagAddedS = 0,
    catchUpMarginS = 0,
    catchUpStepS = 0,
    catchUpChunks = 0,
  }) {
    this.chunkDurationS = chunkDurationS;
    this.startBehindChunks = startBehindChunks;
    this.targetLagS = targetLagS;
    this.joinedS = joinedS;
    this.startSeq = null;
    /** The start seq chosen from what neighbours hold whole (null: not chosen that way yet). */
    this.startFromPeers = null;
    /** The next seq to play (or skip). */
    this.nextSeq = null;
    this.playStartS = null;
    this.startMediaS = null;
    /**
     * Playout begins at least this long after the start chunk completes: the next chunks cross
     * the swarm about as late as it did, and a start on the edge would stall on them.
     */
    this.startMarginS = startMarginS;
    this.startSoonerMinLagS = startSoonerMinLagS;
    this.lagMarginS = lagMarginS;
    this.lagStepS = lagStepS;
    this.stallStepS = stallStepS;
    this.maxStallS = maxStallS;
    this.maxLagAddedS = maxLagAddedS;
    this.catchUpMarginS = catchUpMarginS;
    this.catchUpStepS = catchUpStepS;
    this.catchUpChunks = catchUpChunks;
    /** Played on time. */
    this.played = 0;
    /** Played after stalling for it. */
    this.late = 0;
    /** Skipped. */
    this.missed = 0;
    /**
     * How far playout has been pushed back since it started (slow-downs and stalls; catch-up
     * takes it back, possibly below zero).
     */
    this.lagAddedS = 0;
    this.stallS = 0;
    /** When playout began (playStartS moves when the lag adapts; this does not). */
    this.startedAtS = null;
    /** The lag playout began with: the lag now is startLagS + lagAddedS. */
    this.startLagS = 0;
    /** When the start chunk was complete and playout was scheduled (for the startup phases). */
    this.startCompleteAtS = null;
    /** How far playout was pushed back for chunks the source released late (long chunks). */
    this.reanchoredS = 0;
    this.reanchors = 0;
    /** The next chunk is past the live edge: only input (its header) can move playout on. */
    this.waitingAtEdge = false;
    /** The chunk playout last waited for at the live edge: when it comes, playout resumes. */
    this._edgeSeq = null;
    /** Time the picture stood still at the live edge (the source sent nothing new). */
    this.pausedS = 0;
    this.longestPauseS = 0;
    this._pausedSinceS = null;
    /** Seqs [lo, hi) a restarted broadcast skipped: they never existed, so they count nowhere. */
    this._neverReleased = [0, 0];
    this.lagsS = [];
    /**
     * The first MAX_NOT_ON_TIME chunks played late or skipped: seq, seconds after playout began,
     * whether it played (a diagnosis of when a swarm falls behind: flash crowd, steady).
     */
    this.notOnTime = [];
    this._stalledSeq = null;
    this._stalledForS = 0;
    this._earlyInARow = 0;
  }

  get started() {
    return this.playStartS !== null;
  }

  get startupS() {
    return this.startedAtS === null ? null : this.startedAtS - this.joinedS;
  }

  /** Choose the start point the first time we hear of any chunk. */
  hearOf(newestSeq) {
    if (this.startSeq === null) {
      this.startSeq = Math.max(0, newestSeq - this.startBehindChunks);
      this.nextSeq = this.startSeq;
    }
  }

  /**
   * Schedule playout once the start chunk is complete; true when it was scheduled now.
   *
   * Playout begins targetLagS after the source released the start chunk, so every later chunk
   * has about targetLagS to cross the swarm; never later than now + targetLagS (a source clock
   * far ahead of ours must not freeze us) and never before now + startMarginS (a start chunk
   * that took longer than the target to reach us says the next ones will too: starting the
   * moment it completes would stall on them).
   */
  startIfReady(now, startComplete, mediaStartS, releaseS) {
    if (this.playStartS !== null || this.startSeq === null || !startComplete) return false;
    const latestS = now + this.targetLagS;
    const earliestS = now + this.startMarginS;
    this.playStartS = Math.max(earliestS, Math.min(releaseS + this.targetLagS, latestS));
    this.startedAtS = this.playStartS;
    this.startLagS = this.playStartS - releaseS;
    this.startCompleteAtS = now;
    this.startMediaS = mediaStartS;
    return true;
  }

  /**
   * The chunk after the start chunk is complete too, before playout began: it need not wait out
   * startMarginS (that margin is for the next chunks, and the first of them is here). It begins
   * now, or startSoonerMinLagS after the start chunk's release if that is later (the chunks after
   * it still have to cross the swarm). A start chunk released before we joined took our join and
   * fetch to complete, not the swarm's crossing time, and the margin added to that only added
   * lag. True when moved.
   */
  startSooner(now) {
    if (this.playStartS === null || now >= this.playStartS || this.nextSeq !== this.startSeq) {
      return false;
    }
    const releaseS = this.playStartS - this.startLagS;
    const soonerS = Math.max(now, releaseS + this.startSoonerMinLagS);
    if (soonerS >= this.playStartS) return false;
    this.playStartS = this.startedAtS = soonerS;
    this.startLagS = soonerS - releaseS;
    return true;
  }

  /** When seq must be complete. Before playout starts, estimated as if it started now. */
  deadline(seq, mediaStartS, now) {
    if (this.startSeq === null) throw new Error("deadline before a start point was chosen");
    const base = this.playStartS !== null ? this.playStartS : now;
    if (mediaStartS !== null && mediaStartS !== undefined && this.startMediaS !== null) {
      return base + (mediaStartS - this.startMediaS);
    }
    return base + (seq - this.startSeq) * this.chunkDurationS;
  }

  /** Delay every later deadline by up to byS (within maxLagAddedS); returns the delay. */
  _pushBack(byS) {
    if (this.playStartS === null) return 0;
    const step = Math.max(0, Math.min(byS, this.maxLagAddedS - this.lagAddedS));
    this.playStartS += step;
    this.lagAddedS += step;
    return step;
  }

  /**
   * A chunk completed at now, due at deadlineS: slow down if that was a close call, speed up
   * after a run of early ones. Returns the lag added (negative: removed).
   */
  completed(deadlineS, now) {
    const marginS = deadlineS - now;
    if (!this.started || marginS < 0) return 0;
    if (marginS < this.lagMarginS) {
      this._earlyInARow = 0;
      return this._pushBack(Math.min(this.lagMarginS - marginS, this.lagStepS));
    }
    if (this.catchUpChunks <= 0 || marginS < this.catchUpMarginS) {
      this._earlyInARow = 0;
      return 0;
    }
    this._earlyInARow += 1;
    if (this._earlyInARow < this.catchUpChunks || this.playStartS === null) return 0;
    const lagS = this.startLagS + this.lagAddedS; // (re-anchoring is kept: the source's timing)
    const step = Math.min(this.catchUpStepS, lagS - this.targetLagS);
    if (step <= 0) return 0;
    this.playStartS -= step;
    this.lagAddedS -= step;
    return -step;
  }

  /**
   * Advance the playout clock to now: [[seq, played?]] for every chunk that fell due.
   *
   * mayCome(seq) false (nobody has announced it: a gap in the stream, such as a broadcaster
   * restart) skips a missing chunk at once instead of stalling for it. releaseS(seq) (its
   * header's release time, null if unknown) re-anchors playout for a chunk released late;
   * atEdge(seq) true (past the live edge) waits for it: see the module's rules.
   */
  due(now, mediaStartS, isComplete, mayCome = null, releaseS = null, atEdge = null) {
    const out = [];
    this.waitingAtEdge = false;
    if (this.playStartS === null || this.nextSeq === null) return out;
    for (;;) {
      const seq = this.nextSeq;
      const deadlineS = this.deadline(seq, mediaStartS(seq), now);
      if (deadlineS > now) break;
      const ok = isComplete(seq);
      if (!ok && atEdge !== null && atEdge(seq)) {
        this.waitingAtEdge = true;
        this._edgeSeq = seq;
        if (this._pausedSinceS === null) this._pausedSinceS = deadlineS;
        break;
      }
      if (!ok && this._neverReleased[0] <= seq && seq < this._neverReleased[1]) {
        this.nextSeq += 1;
        continue;
      }
      const resumed = this._edgeSeq === seq;
      if (
        (!ok || resumed) &&
        releaseS !== null &&
        this._reanchor(deadlineS, releaseS(seq), resumed ? now : null)
      ) {
        continue;
      }
      const stalled = this._stalledSeq === seq;
      if (
        !ok &&
        this.stallStepS > 0 &&
        (mayCome === null || mayCome(seq)) &&
        (!stalled || this._stalledForS < this.maxStallS)
      ) {
        const step = this._pushBack(this.stallStepS);
        if (step > 0) {
          if (!stalled) {
            this._stalledSeq = seq;
            this._stalledForS = 0;
          }
          this._stalledForS += step;
          this.stallS += step;
          continue;
        }
      }
      if (ok && stalled) this.late += 1;
      else if (ok) this.played += 1;
      else this.missed += 1;
      if ((!ok || stalled) && this.notOnTime.length < MAX_NOT_ON_TIME) {
        const afterStartS = Math.round((now - this.startedAtS) * 1000) / 1000;
        this.notOnTime.push({ seq, after_start_s: afterStartS, played: ok });
      }
      if (ok && this._pausedSinceS !== null) {
        const pauseS = now - this._pausedSinceS;
        this.pausedS += pauseS;
        this.longestPauseS = Math.max(this.longestPauseS, pauseS);
        this._pausedSinceS = null;
      }
      out.push([seq, ok]);
      this.nextSeq += 1;
    }
    return out;
  }

  /** A restarted broadcast starts at hiSeq: seqs from loSeq up to it never existed. */
  skipNeverReleased(loSeq, hiSeq) {
    this._neverReleased = [loSeq, hiSeq];
  }

  /**
   * A chunk released less than the lag playout keeps before deadlineS (a long chunk: released
   * when its last frame was shot) moves every later deadline back so that it gets that lag; one
   * that playout waited for at the live edge (resumedS: now) is due no earlier than now, since
   * the picture froze until it came. True when playout moved.
   */
  _reanchor(deadlineS, releaseS, resumedS = null) {
    if (releaseS === null || releaseS === undefined || this.playStartS === null) return false;
    let floorS = releaseS + this.startLagS + Math.max(0, this.lagAddedS);
    if (resumedS !== null) floorS = Math.max(floorS, resumedS);
    if (floorS <= deadlineS + 1e-9) return false;
    this.playStartS += floorS - deadlineS;
    this.reanchoredS += floorS - deadlineS;
    this.reanchors += 1;
    return true;
  }

  /** Share of the chunks due that played on time (late and skipped ones do not). */
  get continuity() {
    const total = this.played + this.late + this.missed;
    return total === 0 ? null : this.played / total;
  }
}
