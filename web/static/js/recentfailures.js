// Peers whose link failed lately: not offered another link until a while has passed (pure: the
// time is passed in).
//
// Why: a peer that refused us (full), never answered or was dropped would be picked again at once,
// by the server's next list or by our neighbours' next hints, each retry a WebRTC setup on both
// sides. Why forgotten: with no server the hints name only a handful of peers, and a peer full a
// moment ago may have room once others left. Same memory as streamer/node/recent_failures.py
// (tests/scenarios/recent_failures.json).

export const FAILED_PEER_MEMORY_S = 20;

export class RecentFailures {
  constructor(memoryS = FAILED_PEER_MEMORY_S) {
    this.memoryS = memoryS;
    this.failedAtS = new Map();
  }

  /** peerId's link failed now (a later failure starts the wait again). */
  add(peerId, nowS) {
    this.failedAtS.set(peerId, nowS);
  }

  /** The peers not to try now; those failed more than memoryS ago are forgotten. */
  ids(nowS) {
    for (const [peerId, failedAtS] of this.failedAtS) {
      if (nowS - failedAtS > this.memoryS) this.failedAtS.delete(peerId);
    }
    return new Set(this.failedAtS.keys());
  }
}
