// The playout model: where a viewer starts, when each chunk is due, played or skipped, lag.
//
// The same rules as streamer/swarm/playback.py (and so as `streamer watch`): start
// `startBehindChunks` behind the newest seq heard of; once the start chunk is complete, playback
// begins targetLagS after the source released it (not before now, not after now + targetLagS);
// chunk seq is due at playStart + (its media start - the start chunk's media start); at its
// deadline a chunk is played if complete, otherwise skipped (never stall forever).
// Pure: `now` (seconds) is passed in; no timers, no DOM.

export class Playback {
  constructor({ chunkDurationS, startBehindChunks, joinedS, targetLagS = 0 }) {
    this.chunkDurationS = chunkDurationS;
    this.startBehindChunks = startBehindChunks;
    this.targetLagS = targetLagS;
    this.joinedS = joinedS;
    this.startSeq = null;
    /** The next seq to play (or skip). */
    this.nextSeq = null;
    this.playStartS = null;
    this.startMediaS = null;
    this.played = 0;
    this.missed = 0;
    this.lagsS = [];
  }

  get started() {
    return this.playStartS !== null;
  }

  get startupS() {
    return this.playStartS === null ? null : this.playStartS - this.joinedS;
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
   * far ahead of ours must not freeze us) and never before now.
   */
  startIfReady(now, startComplete, mediaStartS, releaseS) {
    if (this.playStartS !== null || this.startSeq === null || !startComplete) return false;
    this.playStartS = Math.max(now, Math.min(releaseS + this.targetLagS, now + this.targetLagS));
    this.startMediaS = mediaStartS;
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

  /** Advance the playout clock to now: [[seq, played?]] for every chunk that fell due. */
  due(now, mediaStartS, isComplete) {
    const out = [];
    if (this.playStartS === null || this.nextSeq === null) return out;
    while (this.deadline(this.nextSeq, mediaStartS(this.nextSeq), now) <= now) {
      const seq = this.nextSeq;
      const ok = isComplete(seq);
      if (ok) this.played += 1;
      else this.missed += 1;
      out.push([seq, ok]);
      this.nextSeq += 1;
    }
    return out;
  }

  get continuity() {
    const total = this.played + this.missed;
    return total === 0 ? null : this.played / total;
  }
}
