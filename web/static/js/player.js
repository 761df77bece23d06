// The MSE player: turns verified chunks (fragmented MP4: one init segment, then moof+mdat chunks
// that each start on a keyframe) into video in a <video> element.
//
// Why a module: MediaSource has sharp edges (one append at a time, QuotaExceededError, gaps that
// stall playback forever, a playhead that drifts behind the live edge). This class owns them all;
// its decisions come from playerpolicy.js (pure), so only the carrying-out is here.
//
// Rules: chunks are appended in seq order, each once; a chunk that will not come is skipped (by
// skipChunk, or by ourselves when the playhead is about to run dry and a later chunk is waiting);
// nothing here throws into the caller: failures become `state`/`error` and counters.

import {
  DEFAULT_POLICY,
  behindCoreS,
  bufferAheadS,
  catchUp,
  followLag,
  gapJump,
  rangesOf,
  startPosition,
  trimRange,
} from "./playerpolicy.js";

/** Can this browser play `mimeType` through MSE? {ok, reason} with a sentence for the page. */
export function supportReport(mimeType, win = globalThis) {
  const MS = win.MediaSource ?? win.ManagedMediaSource;
  if (!MS) {
    return {
      ok: false,
      reason:
        "This browser has no Media Source Extensions, which the player needs. " +
        "Try a recent Chrome, Edge, Firefox or Safari.",
    };
  }
  if (!win.RTCPeerConnection) {
    return {
      ok: false,
      reason:
        "This browser has no WebRTC data channels, which the peer-to-peer swarm needs " +
        "(some WebKit builds leave them out). Try a recent Chrome, Edge, Firefox or Safari.",
    };
  }
  if (!MS.isTypeSupported(mimeType)) {
    return {
      ok: false,
      reason:
        `Its format, ${mimeType}, is not one this browser's Media Source Extensions play. ` +
        "Try another browser, or ask the broadcaster for H.264/AAC, which every major browser plays.",
    };
  }
  return { ok: true, reason: "" };
}

export class MsePlayer {
  /**
   * `video`: the element. `onEvent(name, detail)`: "firstframe", "stall", "playing", "error",
   * "autoplay-muted". `clock()` returns Unix seconds (for lag against the source's release time).
   */
  constructor(video, { policy = {}, onEvent = () => {}, clock = unixNowS } = {}) {
    this.video = video;
    this.policy = { ...DEFAULT_POLICY, ...policy };
    this.onEvent = onEvent;
    this.clock = clock;
    this.held = false;
    /** The lag the swarm core played its last chunk at (null: it has not played one). */
    this.targetLagS = null;
    this.mediaSource = null;
    this.sourceBuffer = null;
    this.mimeType = null;
    this.pending = new Map(); // seq -> {bytes, meta}
    this.nextSeq = null;
    this.waitingSinceS = null;
    this.appended = []; // metas of appended chunks, newest last (bounded)
    this.removeRequest = null;
    this.started = false;
    this.error = null;
    this.openedAtS = null;
    this.firstFrameAtS = null;
    this.stalls = 0;
    this.stallStartS = null;
    this.stalledS = 0;
    this.chunksAppended = 0;
    this.chunksSkipped = 0;
    this.chunksLate = 0;
    this.quotaErrors = 0;
    this.seeksForLag = 0;
    this.gapJumps = 0;
    this._initAppended = false;
    this._appending = null;
    this._initSegment = null;
    this._lastQuotaSeq = null;
    this._objectUrl = null;
    this._onWaiting = () => this._stallBegins();
    this._onPlaying = () => this._stallEnds();
    this._onError = () => this._fail(`video error: ${this.video.error?.message || this.video.error?.code}`);
  }

  /** Open a MediaSource for `mimeType` and queue the init segment. Resolves when ready. */
  async open(mimeType, initSegment) {
    this.mimeType = mimeType;
    this._initSegment = initSegment;
    this.openedAtS = this.clock();
    // iOS Safari has only ManagedMediaSource, which plays only with remote playback disabled.
    const MS = globalThis.MediaSource ?? globalThis.ManagedMediaSource;
    const ms = new MS();
    this.mediaSource = ms;
    if (MS !== globalThis.MediaSource) this.video.disableRemotePlayback = true;
    this._objectUrl = URL.createObjectURL(ms);
    this.video.src = this._objectUrl;
    this.video.addEventListener("waiting", this._onWaiting);
    this.video.addEventListener("playing", this._onPlaying);
    this.video.addEventListener("error", this._onError);
    await new Promise((resolve, reject) => {
      ms.addEventListener("sourceopen", resolve, { once: true });
      setTimeout(() => reject(new Error("MediaSource did not open")), 5000);
    });
    const sb = ms.addSourceBuffer(mimeType);
    sb.mode = "segments"; // fragments carry their own timestamps: a skipped chunk leaves a hole
    sb.addEventListener("updateend", () => this._onUpdateEnd());
    sb.addEventListener("error", () => this._fail("the browser refused a media segment"));
    this.sourceBuffer = sb;
    this._pump();
  }

  /** Play from `seq` on: earlier chunks are ignored as late. */
  expectSeq(seq) {
    if (this.nextSeq === null || (!this.chunksAppended && seq > this.nextSeq)) this.nextSeq = seq;
  }

  /** A verified chunk. `meta` = {startS, durationS, releaseS (Unix time, at the source)}. */
  pushChunk(seq, bytes, meta) {
    if (this.error) return;
    if (this.nextSeq === null) this.nextSeq = seq;
    // Late, duplicate, or absurdly far ahead of a chunk we still wait for (memory stays bounded).
    if (seq < this.nextSeq || this.pending.has(seq) || this.pending.size >= 64) {
      this.chunksLate += 1;
      return;
    }
    this.pending.set(seq, { bytes, meta: { seq, ...meta } });
    this._pump();
  }

  /** The swarm gave up on seq (its deadline passed): do not wait for it. */
  skipChunk(seq) {
    if (this.nextSeq !== null && seq === this.nextSeq && !this.pending.has(seq)) {
      this._skip();
      this._pump();
    }
  }

  /** Housekeeping, about every 250 ms: lag, gaps, trimming, giving up on a missing chunk. */
  tick() {
    const video = this.video;
    const sb = this.sourceBuffer;
    if (!sb || this.error || !this.started) {
      this._pump();
      return;
    }
    const ranges = this.ranges();
    const now = this.clock();
    // A chunk is missing while later ones wait: once the playhead runs dry, skip it (following
    // the core, only when the core has not given it up in its own time: see skipChunk).
    if (this.pending.size && !this.pending.has(this.nextSeq)) {
      if (this.waitingSinceS === null) this.waitingSinceS = now;
      const dry = bufferAheadS(ranges, video.currentTime) < 0.3;
      const waitS = this.targetLagS === null ? this.policy.skipWaitS : this.policy.coreSkipWaitS;
      if (dry && now - this.waitingSinceS > waitS) {
        this._skip();
        this._pump();
      }
    } else {
      this.waitingSinceS = null;
    }
    const jump = gapJump(ranges, video.currentTime, this.policy);
    if (this.held) {
      // A viewer's pause holds the picture where it is: no catching up until they resume.
    } else if (jump !== null && (video.readyState < 3 || this.stallStartS !== null)) {
      this.gapJumps += 1;
      video.currentTime = jump;
    } else {
      const follow = followLag(this.videoLagS(), this.targetLagS, this.policy);
      const decision = follow
        ? { seekTo: this._seekForward(ranges, follow.seekByS), rate: follow.rate }
        : catchUp(ranges, video.currentTime, this.policy, this.recentChunkS());
      if (decision.seekTo !== null) {
        this.seeksForLag += 1;
        video.currentTime = decision.seekTo;
      }
      if (video.playbackRate !== decision.rate) video.playbackRate = decision.rate;
    }
    if (this.removeRequest === null) {
      const trim = trimRange(ranges, video.currentTime, this.policy);
      if (trim) this.removeRequest = trim;
    }
    if (video.paused && this.started && !video.ended) this._play();
    this._pump();
  }

  /** The longest of the last few chunks appended (s): encoders' GOPs vary, 1-10 s. */
  recentChunkS() {
    let longestS = 0;
    for (const m of this.appended.slice(-8)) longestS = Math.max(longestS, m.durationS ?? 0);
    return longestS;
  }

  ranges() {
    return this.sourceBuffer ? rangesOf(this.sourceBuffer.buffered) : [];
  }

  /** Live lag of the picture: now - when the source released the media being shown. */
  videoLagS() {
    const t = this.video.currentTime;
    for (let i = this.appended.length - 1; i >= 0; i -= 1) {
      const m = this.appended[i];
      if (m.mseStartS === undefined || typeof m.releaseS !== "number") continue;
      if (t >= m.mseStartS - 0.05 && t < m.mseEndS + 0.05) {
        return this.clock() - m.releaseS - Math.max(0, t - m.mseStartS);
      }
    }
    return null;
  }

  stats() {
    const q = this.video.getVideoPlaybackQuality?.();
    const ranges = this.ranges();
    return {
      state: this.error ? "error" : this.started ? "playing" : "waiting",
      current_time_s: this.video.currentTime,
      buffer_s: bufferAheadS(ranges, this.video.currentTime),
      buffered_total_s: ranges.reduce((acc, [a, b]) => acc + (b - a), 0),
      video_lag_s: this.videoLagS(),
      behind_core_s: behindCoreS(this.videoLagS(), this.targetLagS, this.policy),
      playback_rate: this.video.playbackRate,
      frames_decoded: q ? q.totalVideoFrames : null,
      frames_dropped: q ? q.droppedVideoFrames : null,
      first_frame_s: this.firstFrameAtS === null ? null : this.firstFrameAtS - this.openedAtS,
      stalls: this.stalls,
      stalled_s: this.stalledS + (this.stallStartS === null ? 0 : this.clock() - this.stallStartS),
      chunks_appended: this.chunksAppended,
      chunks_skipped: this.chunksSkipped,
      chunks_late: this.chunksLate,
      quota_errors: this.quotaErrors,
      seeks_for_lag: this.seeksForLag,
      gap_jumps: this.gapJumps,
      error: this.error,
    };
  }

  /**
   * The swarm core played a chunk at `lagS` (its ChunkPlayed): the picture keeps that lag (see
   * followLag), so that it stalls when the core's playout does and not otherwise.
   */
  followCoreLag(lagS) {
    this.targetLagS = lagS;
  }

  /** Where a seek forward by `byS` lands, kept inside the buffered media (null: no seek). */
  _seekForward(ranges, byS) {
    if (byS === null || !ranges.length) return null;
    const liveEnd = ranges[ranges.length - 1][1];
    const to = Math.min(this.video.currentTime + byS, liveEnd - this.policy.followToleranceS);
    return to > this.video.currentTime ? to : null;
  }

  /** Held: a viewer paused; tick() neither restarts the <video> nor moves it towards live. */
  setHeld(held) {
    this.held = held;
  }

  /** Jump to where a new viewer would start (near the live edge) and play. */
  goLive() {
    const pos = startPosition(this.ranges(), this.policy, this.recentChunkS());
    this.held = false;
    if (pos === null || !this.started) return;
    this.video.currentTime = pos;
    this._play();
  }

  close() {
    this.video.removeEventListener("waiting", this._onWaiting);
    this.video.removeEventListener("playing", this._onPlaying);
    this.video.removeEventListener("error", this._onError);
    try {
      if (this.mediaSource?.readyState === "open") this.mediaSource.endOfStream();
    } catch {
      /* closing anyway */
    }
    if (this._objectUrl) URL.revokeObjectURL(this._objectUrl);
    this.video.removeAttribute("src");
    this.video.load();
    this.sourceBuffer = null;
    this.mediaSource = null;
    this.pending.clear();
  }

  // -- internals ---------------------------------------------------------------------------------

  _skip() {
    this.chunksSkipped += 1;
    this.nextSeq += 1;
    this.waitingSinceS = null;
    // Anything older than the new nextSeq that is still held is useless now.
    for (const seq of this.pending.keys()) if (seq < this.nextSeq) this.pending.delete(seq);
  }

  /** Note where the chunk just appended landed in MSE time (its header's media time may differ). */
  _onUpdateEnd() {
    const meta = this._appending;
    this._appending = null;
    if (meta) {
      const ranges = this.ranges();
      if (ranges.length) {
        const [start, end] = ranges[ranges.length - 1];
        meta.mseEndS = end;
        meta.mseStartS = Math.max(start, end - (meta.durationS ?? 1));
      }
    }
    this._pump();
  }

  _pump() {
    const sb = this.sourceBuffer;
    if (!sb || sb.updating || this.error || this.mediaSource?.readyState !== "open") return;
    if (!this._initAppended) {
      this._initAppended = true;
      this._append(this._initSegment, null);
      return;
    }
    if (this.removeRequest !== null) {
      const [start, end] = this.removeRequest;
      this.removeRequest = null;
      if (end > start) {
        try {
          sb.remove(start, end);
          return;
        } catch {
          /* nothing to remove after all */
        }
      }
    }
    const item = this.nextSeq === null ? undefined : this.pending.get(this.nextSeq);
    if (item) {
      this.pending.delete(this.nextSeq);
      this.nextSeq += 1;
      this._append(item.bytes, item.meta);
    }
  }

  _append(bytes, meta) {
    const sb = this.sourceBuffer;
    try {
      sb.appendBuffer(bytes);
    } catch (err) {
      if (err?.name === "QuotaExceededError" && meta) {
        this.quotaErrors += 1;
        if (this._lastQuotaSeq === meta.seq) {
          this.chunksSkipped += 1; // already retried once: give this chunk up
          return;
        }
        this._lastQuotaSeq = meta.seq;
        // Put it back and make room: drop everything well behind the playhead, then retry.
        this.nextSeq = meta.seq;
        this.pending.set(meta.seq, { bytes, meta });
        const ranges = this.ranges();
        const end = this.video.currentTime - 1;
        if (ranges.length && end > ranges[0][0]) this.removeRequest = [ranges[0][0], end];
        setTimeout(() => this._pump(), 100);
        return;
      }
      this._fail(`append failed: ${err?.message ?? err}`);
      return;
    }
    if (!meta) return;
    this._appending = meta;
    this.chunksAppended += 1;
    this.appended.push(meta);
    if (this.appended.length > 120) this.appended.shift();
    if (!this.started) {
      sb.addEventListener("updateend", () => this._startPlayback(), { once: true });
    }
  }

  _startPlayback() {
    if (this.started) return;
    const pos = startPosition(this.ranges(), this.policy, this.recentChunkS());
    if (pos === null) return;
    this.started = true;
    // Only a real move: WebKitGTK's GStreamer pipeline fails the stream ("Failed to push buffer")
    // when seeked while it prerolls from the playhead, even to where the playhead already is.
    if (this.video.currentTime !== pos) this.video.currentTime = pos;
    this._watchFirstFrame();
    this._play();
  }

  _play() {
    if (this.held) return;
    const p = this.video.play();
    if (!p || !p.catch) return;
    p.catch((err) => {
      if (err?.name === "NotAllowedError" && !this.video.muted) {
        // Autoplay with sound is refused without a gesture: start muted, let the user unmute.
        this.video.muted = true;
        this.onEvent("autoplay-muted", {});
        this.video.play().catch(() => {});
      }
    });
  }

  _watchFirstFrame() {
    const done = () => {
      if (this.firstFrameAtS === null) {
        this.firstFrameAtS = this.clock();
        this.onEvent("firstframe", { first_frame_s: this.firstFrameAtS - this.openedAtS });
      }
    };
    if (typeof this.video.requestVideoFrameCallback === "function") {
      this.video.requestVideoFrameCallback(done);
    } else {
      this.video.addEventListener("playing", done, { once: true });
    }
  }

  _stallBegins() {
    if (!this.started || this.stallStartS !== null) return;
    this.stallStartS = this.clock();
    this.stalls += 1;
    this.onEvent("stall", {});
  }

  _stallEnds() {
    if (this.stallStartS !== null) {
      this.stalledS += this.clock() - this.stallStartS;
      this.stallStartS = null;
    }
    this.onEvent("playing", {});
  }

  _fail(message) {
    if (this.error) return;
    this.error = message;
    this.onEvent("error", { message });
  }
}

export function unixNowS() {
  return (performance.timeOrigin + performance.now()) / 1000;
}
