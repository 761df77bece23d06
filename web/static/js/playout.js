// Between the chunk store and the playout model: where to start, what plays or is missed when.
// The JavaScript twin of streamer/swarm/playout.py.
//
// Playback (playback.js) is the clock of a player; this module feeds it what the swarm knows.
// Rules: start one chunk past the newest a neighbour other than the source holds whole (or
// startBehindChunks behind the newest heard of, while no peer holds one); a start chunk with
// pieces held is kept, unless startGiveUpChunks later chunks complete first; a due chunk is played
// whole or reported missed and abandoned, never played in part; the window keeps
// keepBehindChunks behind the next chunk to play. JS only: a header still being verified
// (verifying.js) counts as held, for stalling and for the live edge.

import { Playback } from "./playback.js";

export class Playout {
  /**
   * @param {object} parts
   * @param {(seq: number) => void} parts.abandon  stop fetching seq (fetching and serving both)
   */
  constructor(ctx, { checks, plays, now, abandon }) {
    ({ config: this.config, store: this.store, nbrs: this.nbrs, outbox: this.outbox } = ctx);
    this.checks = checks;
    this.abandon = abandon;
    this.newestHeard = null;
    /** The newest seq a neighbour other than the source holds whole (the start point). */
    this.newestAtPeer = null;
    /** When we first heard of any chunk (the start point settles for startSettleS). */
    this.firstHeardS = now;
    const config = this.config;
    this.playback = plays
      ? new Playback({
          chunkDurationS: config.chunkDurationS,
          startBehindChunks: config.startBehindChunks,
          targetLagS: config.targetLagS,
          joinedS: now,
          startMarginS: config.startMarginS,
          startSoonerMinLagS: config.startSoonerMinLagS,
          lagMarginS: config.lagMarginS,
          lagStepS: config.lagStepS,
          stallStepS: config.stallStepS,
          maxStallS: config.maxStallS,
          maxLagAddedS: config.maxLagAddedS,
          catchUpMarginS: config.catchUpMarginS,
          catchUpStepS: config.catchUpStepS,
          catchUpChunks: config.catchUpChunks,
        })
      : null;
  }

  mediaStartS(seq) {
    return this.store.mediaStartS(seq, this.config.chunkDurationS);
  }

  /** When seq is due (playback only). */
  deadlineS(seq, now) {
    return this.playback.deadline(seq, this.mediaStartS(seq), now);
  }

  /** When the next chunk is due, if playout is running and not waiting at the live edge. */
  nextDeadlineS(now) {
    const pb = this.playback;
    if (pb !== null && pb.started && pb.nextSeq !== null && !pb.waitingAtEdge) {
      return pb.deadline(pb.nextSeq, this.mediaStartS(pb.nextSeq), now);
    }
    return null;
  }

  /** seq exists (atPeer: a neighbour other than the source holds all of it). */
  heard(seq, now, atPeer = false) {
    if (this.newestHeard === null || seq > this.newestHeard) {
      if (this.newestHeard === null) this.firstHeardS = now;
      this.newestHeard = seq;
    }
    if (atPeer && (this.newestAtPeer === null || seq > this.newestAtPeer)) {
      this.newestAtPeer = seq;
    }
    const pb = this.playback;
    if (pb === null) return;
    pb.hearOf(seq);
    if (pb.started || pb.startSeq === null) return;
    const frontier = this.newestAtPeer;
    if (frontier !== null) {
      // Start where the peers are, one chunk past the newest a peer holds whole. That one has
      // crossed the swarm already (its age is the swarm's spread time), and fetching it would
      // add our fetch to that age; the next one is crossing now and completes for us about when
      // it does for the others.
      const past = this.config.startPastPeersChunks;
      const start = Math.max(0, Math.min(frontier + past, this.newestHeard));
      const settling = now - this.firstHeardS < this.config.startSettleS;
      // A start chunk we hold pieces of is kept: on a slow link, chasing the frontier threw away
      // every start chunk half fetched, and playout never began.
      const chunk = this.store.get(pb.startSeq);
      const fetching = chunk !== null && chunk.haveCount > 0;
      if (
        pb.startFromPeers === null ||
        start < pb.startSeq ||
        (start - pb.startSeq > 2 && !fetching) ||
        (settling && start > pb.startSeq)
      ) {
        pb.startFromPeers = start;
        pb.startSeq = pb.nextSeq = start;
      }
    } else if (seq - pb.startSeq > pb.startBehindChunks + 2) {
      // Never chase a start point that fell far behind before we could fetch it.
      pb.startSeq = pb.nextSeq = seq - pb.startBehindChunks;
    }
  }

  /** A chunk completed here: playback learns how early (it adapts the lag). */
  /**
   * Where startup went, in seconds from joining: the first link open, the first chunk heard of,
   * the start chunk complete (playout scheduled), playout begun; and the start chunk's release
   * (negative: before we joined). Null for a source.
   */
  startupPhases(firstLinkS) {
    const pb = this.playback;
    if (pb === null) return null;
    const sinceJoin = (atS) => (atS === null ? null : atS - pb.joinedS);
    const releaseS = pb.startedAtS === null ? null : pb.startedAtS - pb.startLagS;
    return {
      first_link_s: sinceJoin(firstLinkS),
      first_heard_s: sinceJoin(this.newestHeard === null ? null : this.firstHeardS),
      start_complete_s: sinceJoin(pb.startCompleteAtS),
      play_s: pb.startupS,
      start_release_s: sinceJoin(releaseS),
    };
  }

  completed(chunk, now) {
    const pb = this.playback;
    const seq = chunk.header.seq;
    if (pb !== null && pb.started && pb.nextSeq !== null && seq >= pb.nextSeq) {
      this.startSooner(now); // first: how early this chunk came depends on it
      pb.completed(pb.deadline(seq, chunk.header.startUs / 1e6, now), now);
    }
  }

  /**
   * Playout scheduled and the chunk after the start chunk complete: begin sooner. (Runs after
   * every input: once playout began, the first test ends it.)
   */
  startSooner(now) {
    const pb = this.playback;
    if (pb === null || pb.playStartS === null || now >= pb.playStartS) return;
    if (pb.startSeq === null) return;
    if (this.store.isComplete(pb.startSeq + 1)) pb.startSooner(now);
  }

  /**
   * Start, play or miss what is due now. Returns [whether any chunk came due (the plan changes
   * then), the seq below which the window may be evicted when that floor moved up, else null].
   */
  play(now) {
    const pb = this.playback;
    if (pb === null || pb.startSeq === null) return [false, null];
    if (!pb.started) {
      let start = this.store.get(pb.startSeq);
      if (start === null || !start.complete) {
        const later = this.store.completeSeqs().filter((s) => s > pb.startSeq);
        if (later.length >= this.config.startGiveUpChunks) {
          this.abandon(pb.startSeq);
          pb.startSeq = pb.nextSeq = pb.startFromPeers = later[0];
          start = this.store.get(later[0]);
        }
      }
      if (start !== null && start.complete) {
        pb.startIfReady(now, true, start.header.startUs / 1e6, start.header.releaseUs / 1e6);
      }
    }
    this.startSooner(now);
    const due = pb.due(
      now,
      (s) => this.mediaStartS(s),
      (s) => this.store.isComplete(s),
      (s) => this.mayCome(s),
      (s) => this.releaseS(s),
      (s) => this.atEdge(s),
    );
    let anyDue = false;
    for (const [seq, ok] of due) {
      anyDue = true;
      const chunk = this.store.get(seq);
      if (ok && chunk !== null) {
        const deadline = pb.deadline(seq, chunk.header.startUs / 1e6, now);
        const lagS = deadline - chunk.header.releaseUs / 1e6;
        pb.lagsS.push(lagS);
        this.outbox.emit({ kind: "ChunkPlayed", seq, lagS, data: chunk.data() });
      } else {
        this.outbox.emit({ kind: "ChunkMissed", seq });
        this.abandon(seq);
      }
    }
    if (pb.nextSeq !== null) {
      const floor = pb.nextSeq - this.config.keepBehindChunks;
      if (floor > this.store.floorSeq) return [anyDue, floor];
    }
    return [anyDue, null];
  }

  /** Worth stalling for: we hold its header (or are checking one) or a neighbour announced it. */
  mayCome(seq) {
    if (this.store.get(seq) !== null || this.checks.has(seq)) return true;
    for (const nb of this.nbrs.values()) if (nb.holds(seq)) return true;
    return false;
  }

  releaseS(seq) {
    const chunk = this.store.get(seq);
    return chunk === null ? null : Number(chunk.header.releaseUs) / 1e6;
  }

  /** Past the live edge: no header of seq or of any later chunk has arrived (or is pending). */
  atEdge(seq) {
    if (this.store.get(seq) !== null || this.checks.anyFrom(seq)) return false;
    const newest = this.store.newestSeq;
    return newest === null || seq > newest;
  }
}
