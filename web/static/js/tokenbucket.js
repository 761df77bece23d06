// Upload cap for the page: a token bucket in bytes, time passed in (pure).
//
// Why: a viewer uploads to its neighbours, but a phone on a metered or slow link must not give all
// its bandwidth away. The driver asks `canSend(size, now)` before producing a data message and `take`s
// what it sent; when it says no, `waitS(size, now)` tells how long until it would say yes.

export class TokenBucket {
  /** `rateBytesPerS` <= 0 means no cap. */
  constructor(rateBytesPerS, burstBytes, nowS) {
    this.rate = rateBytesPerS;
    this.burst = Math.max(burstBytes, 1);
    this.tokens = this.burst;
    this.lastS = nowS;
  }

  get unlimited() {
    return !(this.rate > 0);
  }

  _refill(nowS) {
    if (nowS > this.lastS) {
      this.tokens = Math.min(this.burst, this.tokens + (nowS - this.lastS) * this.rate);
      this.lastS = nowS;
    }
  }

  /** True when a message of about `sizeBytes` may be sent now (ask before producing it). */
  canSend(sizeBytes, nowS) {
    if (this.unlimited) return true;
    this._refill(nowS);
    return this.tokens >= Math.min(sizeBytes, this.burst);
  }

  /** Account for `sizeBytes` sent (the balance may dip below zero by one message). */
  take(sizeBytes, nowS) {
    if (this.unlimited) return;
    this._refill(nowS);
    this.tokens -= sizeBytes;
  }

  /** Seconds until `sizeBytes` could be taken. */
  waitS(sizeBytes, nowS) {
    if (this.unlimited) return 0;
    this._refill(nowS);
    const need = Math.min(sizeBytes, this.burst) - this.tokens;
    return need <= 0 ? 0 : need / this.rate;
  }
}
