// The swarm core's tunables, with units in their names: the defaults of streamer/swarm/config.py
// (tests/test_conformance.py checks that the two agree).

export const DEFAULT_CONFIG = Object.freeze({
  /** Nominal chunk duration: deadlines of chunks whose header is not known yet extrapolate it. */
  chunkDurationS: 1.0,
  pieceSizeBytes: 8192,
  defaultChunkBytes: 131072,
  targetNeighbours: 8,
  /** Above target: room kept for newcomers who ask us. */
  maxNeighbours: 12,
  wantNeighboursIntervalS: 2.0,
  /**
   * Peer exchange: each neighbour is told our other uploading neighbours this often (0: never;
   * hints received are kept and signals relayed all the same). See exchange.js.
   */
  exchangeIntervalS: 5.0,
  /** ...the first time this long after its link opened (its hello has come by then). */
  exchangeFirstS: 1.0,
  /** Ids per peers message (the wire allows 16); a longer list rotates from one to the next. */
  exchangeMaxPeers: 8,
  /** A neighbour's hints are used for this long after its last peers message. */
  exchangeHintTtlS: 15.0,
  /** Signals taken from one neighbour per second (relayed or for us); the rest are dropped. */
  exchangeMaxSignalsPerS: 20,
  /** A viewer starts this many chunks behind the newest it hears of, as a safety margin. */
  startBehindChunks: 1,
  /**
   * ...but once a neighbour other than the source holds a chunk whole, it starts this many chunks
   * past the newest such chunk (one that is crossing the swarm now), if it has heard of that one...
   */
  startPastPeersChunks: 1,
  /** ...within this long of the first news (buffer maps first, then haves of fresher chunks). */
  startSettleS: 0.5,
  /**
   * Before playout, once this many chunks after the start chunk are complete and it is not,
   * playout starts at the first of them: the start chunk may be one that only the source still
   * holds, whose copy budget is spent.
   */
  startGiveUpChunks: 2,
  fetchAheadChunks: 8,
  /** A chunk whose playout deadline is closer than this is urgent: fetched first, by anyone. */
  urgentS: 1.5,
  /** Chunks kept after playing them, for neighbours that are behind us. */
  keepBehindChunks: 6,
  /** A seq further than this beyond the newest verified one is a protocol error. */
  maxAheadChunks: 64,
  /**
   * No progress on a request for this long beyond the neighbour's measured response time:
   * cancel what is left and ask someone else.
   */
  requestTimeoutS: 1.5,
  /**
   * Pieces asked of a peer that sent nothing of them for this long beyond its slow response time
   * (the upper quartile of its recent ones: stuck behind others' requests there, not just queued)
   * are asked of another holder with room instead, and cancelled there.
   */
  moveAfterS: 0.2,
  /**
   * ...but only from a holder whose response time is below this: a cancel takes about as long to
   * reach a slower one as the piece takes to come, so a move there mostly fetches it twice.
   */
  moveMaxResponseS: 0.2,
  /** A neighbour's response time until one is measured (a home link's round trip). */
  initialResponseS: 0.25,
  /** Pieces in flight per neighbour = measured throughput x this (in bytes, then pieces). */
  pipelineS: 1.0,
  /** Floor of the in-flight limit (before any throughput is measured). */
  minInflightBytes: 16384,
  /** Requests served at a time, most urgent (lowest seq, then oldest) first. */
  uploadSlots: 2,
  /** After an absent, do not ask that neighbour for that chunk again for this long. */
  busyRetryS: 0.5,
  /** Play each chunk this long after the source released it (when clocks agree). */
  targetLagS: 2.5,
  /**
   * Playout begins at least this long after the start chunk completes, however old it is (a
   * viewer joining a swarm whose chunks take longer than targetLagS to cross it).
   */
  startMarginS: 1.0,
  /**
   * ...but once the chunk after the start chunk is complete too, playout begins then, with at
   * least this much lag (Playback.startSooner; SwarmConfig.start_sooner_min_lag_s says why 3 s).
   */
  startSoonerMinLagS: 3.0,
  /**
   * A chunk completing closer than this to its deadline slows playout down (the lag adapts to
   * how long chunks take to cross the swarm; see Playback).
   */
  lagMarginS: 0.7,
  /** At most this much lag added per close call (a player slows down briefly to absorb it). */
  lagStepS: 0.5,
  /** A chunk missing at its deadline stalls playout this long at a time... */
  stallStepS: 0.5,
  /** ...up to this long in all; then it is skipped. */
  maxStallS: 2.0,
  /** Playout is never pushed back further than this beyond where it started. */
  maxLagAddedS: 10.0,
  catchUpMarginS: 1.5,
  catchUpStepS: 0.2,
  /**
   * After catchUpChunks chunks in a row completed catchUpMarginS or more before their deadlines,
   * playout speeds up by catchUpStepS per chunk (never below targetLagS).
   */
  catchUpChunks: 4,
  /**
   * A viewer whose uplink, with work, delivers less than this share of the stream's rate
   * (DeliveredUplinkMeter, fed by the driver: SwarmPeer.uplinkDelivered) stops uploading: it tells
   * its neighbours in a new hello, serves the requests it has queued and answers later ones
   * absent (see config.py). 0: never.
   */
  uploadMinUplinkShare: 0.5,
  /** Outstanding requests a neighbour may have on us; more is a protocol error (flooding). */
  maxServeQueue: 64,
  /** Timeouts in a row (on requests it could have served at once) before it is dropped. */
  stallStrikes: 3,
  /**
   * At most one have per chunk per neighbour this often: the pieces verified meanwhile travel
   * together in the next one (the first goes at once).
   */
  haveIntervalS: 0.05,
  /**
   * What one have costs on the uplink: its own packet (IP, UDP, DTLS and SCTP headers, about 80
   * bytes, for a payload of a few): a data channel sends a small message alone.
   */
  haveWireBytes: 100,
  /**
   * Haves slow down (up to maxHaveIntervalS) so that they take at most this share of the
   * uplink as measured (haveIntervalS).
   */
  haveUplinkShare: 0.1,
  maxHaveIntervalS: 0.5,
  /** The uplink counts as measured while a request has waited this long in our upload queue. */
  backlogAgeS: 0.2,
  /**
   * Send a chunk's signed header along with the first have of it to a neighbour that shows no
   * sign of holding it (see SwarmPeer.sendHave).
   */
  pushHeaders: true,
  /** Housekeeping period while there is work pending (retries after capacity frees up). */
  /** Super-seeding: each piece first to one neighbour; the whole chunk to all after this delay. */
  sourceAnnounceDelayS: 0.6,
  /**
   * Super-seeding goes only to neighbours that joined less than this ago or whose haves showed,
   * within this time, pieces the source never sent them (they are fed by peers, so linked into
   * the swarm): a neighbour every peer dropped (a liar) cannot spread a first copy.
   */
  sourceSeedProofS: 2.0,
  /**
   * A first copy counts as spreading once this many neighbours announced that piece without
   * getting it from us; until then, after sourceAnnounceDelayS, it is offered to one more linked
   * uploader (see reseedStuck).
   */
  sourceSpreadHolders: 2,
  /**
   * After the whole-chunk announce, the source looks again every reseed interval, while the
   * chunk is younger than the window, for first copies that still have not spread, and offers
   * each to one more linked uploader (one may leave or be slow too).
   */
  /**
   * First copies go to uploaders in proportion to 1 / how soon they ask for what they are
   * offered (seeding.js), counted as at least this.
   */
  sourceSeedResponseFloorS: 0.05,
  sourceReseedIntervalS: 0.4,
  sourceReseedWindowS: 3.0,
  /** No neighbour gets more than this share of a chunk's copy budget (see sourceAdmit). */
  sourceMaxShare: 0.5,
  /** The source uploads at most this many copies of a chunk, however large the audience. */
  sourceMaxCopies: 1.9,
  sourceKeepChunks: 16,
  /**
   * Pieces held aside until their chunk's header is stored: one asked of a neighbour may come
   * before the header (pieces travel unordered), and here while the header's signature is checked.
   */
  maxHeldPieceBytes: 8 * 1024 * 1024,
});
