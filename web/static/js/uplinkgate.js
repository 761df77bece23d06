// How much data may wait in the data channels' send buffers, all links together (pure: `now` is
// passed in). Port of streamer/node/uplink_gate.py; both run tests/scenarios/uplink_gate.json.
//
// Why: a data channel takes whatever it is given and queues it. On a home uplink of 0.4-3 Mbit/s
// a megabyte queued is seconds in which every control message (requests, haves) waits behind it
// on the channel's one ordered stream, and in which the core can neither put an urgent piece
// first nor take back one that was cancelled. The gate lets data through only while the bytes
// queued in all links together are under a window of targetQueueS of the uplink's measured drain
// rate (a piece message at least); the rest waits in the core. Control messages never wait for it.
//
// The drain rate is measured, never configured: the bytes that left the buffers per second, over
// intervals in which the buffers never ran dry (an EWMA). An interval in which they ran dry says
// nothing of the uplink: the transport had room for more, and what it took at once may still sit
// in its congestion window rather than on the wire.

export const UPLINK_GATE_CONFIG = Object.freeze({
  /** Data queued in the transport: this long at the measured drain rate... */
  targetQueueS: 0.1,
  /** ...but room for one piece message (8 KiB of payload and its header) at least. */
  minWindowBytes: 9 * 1024,
  /** Before a drain rate is measured. */
  initialWindowBytes: 32 * 1024,
  maxWindowBytes: 1024 * 1024,
  /** Drain rate samples span at least this long. */
  sampleS: 0.1,
  /** Weight of a new sample in the drain rate (EWMA). */
  alpha: 0.25,
});

export class UplinkGate {
  constructor(config = {}) {
    this.config = { ...UPLINK_GATE_CONFIG, ...config };
    this.drainBytesPerS = null;
    this.sampleStartS = null;
    this.startBuffered = 0;
    this.startSent = 0;
    this.ranDry = false;
  }

  get windowBytes() {
    const cfg = this.config;
    if (this.drainBytesPerS === null) return cfg.initialWindowBytes;
    const window = Math.trunc(this.drainBytesPerS * cfg.targetQueueS);
    return Math.max(cfg.minWindowBytes, Math.min(cfg.maxWindowBytes, window));
  }

  /** May another data message be handed to the transport now? */
  hasRoom(bufferedBytes) {
    return bufferedBytes < this.windowBytes;
  }

  /**
   * The bytes queued in the transport now and the bytes ever handed to it (data and control),
   * all links together.
   */
  observe(now, bufferedBytes, sentBytes) {
    if (this.sampleStartS === null) {
      this.startSample(now, bufferedBytes, sentBytes);
      return;
    }
    if (bufferedBytes === 0) this.ranDry = true;
    const elapsedS = now - this.sampleStartS;
    if (elapsedS < this.config.sampleS) return;
    if (!this.ranDry) {
      const drained = this.startBuffered + (sentBytes - this.startSent) - bufferedBytes;
      const sample = Math.max(0, drained / elapsedS);
      const old = this.drainBytesPerS;
      if (old === null) this.drainBytesPerS = sample > 0 ? sample : null;
      else this.drainBytesPerS = old + this.config.alpha * (sample - old);
    }
    this.startSample(now, bufferedBytes, sentBytes);
  }

  startSample(now, bufferedBytes, sentBytes) {
    this.sampleStartS = now;
    this.startBuffered = bufferedBytes;
    this.startSent = sentBytes;
    this.ranDry = bufferedBytes === 0;
  }
}
