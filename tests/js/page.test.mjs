// The watch page's pure modules: player policy, stats, upload cap, signaling messages, media
// description, ICE candidate parsing. (The DOM/MSE/WebRTC parts run in Chromium:
// tests/test_browser_*.py.)
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  DEFAULT_POLICY,
  bufferAheadS,
  catchUp,
  followLag,
  gapJump,
  startPosition,
  trimRange,
} from "../../web/static/js/playerpolicy.js";
import {
  CounterRate,
  RateMeter,
  assembleStats,
  graphLayout,
  peerShare,
} from "../../web/static/js/stats.js";
import { TokenBucket } from "../../web/static/js/tokenbucket.js";
import {
  MIN_PEER_SECRET_CHARS,
  SignalingClient,
  backoffDelayS,
  joinMessage,
  newPeerSecret,
  parseServerMessage,
  parseFailoverUrls,
  serverOrder,
} from "../../web/static/js/signaling.js";
import { MediaError, parseMedia } from "../../web/static/js/media.js";
import { keepsOwnOffer, parseCandidate, sanitizeIceServers } from "../../web/static/js/rtc.js";

const P = DEFAULT_POLICY;

test("start position: near the live edge, inside the newest range", () => {
  assert.equal(startPosition([]), null);
  assert.equal(startPosition([[10, 20]]), 20 - P.targetBufferS);
  // A single short chunk: start at its beginning, not before it.
  assert.equal(startPosition([[0, 5], [30, 31]]), 30);
});

test("catch up: nothing when near target, faster when behind, seek when far behind", () => {
  assert.deepEqual(catchUp([[0, 10]], 10 - P.targetBufferS), { seekTo: null, rate: 1 });
  const behind = 10 - P.targetBufferS - P.speedUpAboveS - 0.5;
  assert.deepEqual(catchUp([[0, 10]], behind), { seekTo: null, rate: P.catchUpRate });
  const far = catchUp([[0, 30]], 10);
  assert.equal(far.seekTo, 30 - P.targetBufferS);
  assert.equal(far.rate, 1);
  // Playhead outside any range (a hole): catch-up does not decide, gapJump does.
  assert.deepEqual(catchUp([[0, 5], [6, 30]], 5.5), { seekTo: null, rate: 1 });
});

test("follow the core's lag: slower ahead of it, faster behind, a seek forward far behind", () => {
  // Nothing to follow before the core plays (or before the picture shows a chunk): catchUp.
  assert.equal(followLag(null, 4), null);
  assert.equal(followLag(4, null), null);
  const aim = 4 + P.followMarginS; // a little behind the core's deadlines
  assert.ok(P.followMarginS > 0);
  assert.deepEqual(followLag(aim + 0.1, 4), { seekByS: null, rate: 1 });
  // At the core's own lag the picture is ahead of where it aims: slower.
  assert.deepEqual(followLag(4, 4), { seekByS: null, rate: P.slowDownRate });
  assert.deepEqual(followLag(aim + P.followToleranceS + 0.5, 4), {
    seekByS: null,
    rate: P.catchUpRate,
  });
  const far = followLag(aim + P.seekAboveS + 2, 4);
  assert.ok(Math.abs(far.seekByS - (P.seekAboveS + 2)) < 1e-9 && far.rate === 1);
  // Far ahead of the core: slower, never a seek back.
  assert.deepEqual(followLag(0.5, 8), { seekByS: null, rate: P.slowDownRate });
  assert.ok(P.slowDownRate < 1 && P.catchUpRate > 1);
});

test("gap jump: over a missing chunk or a stalled input's hole, not while media remains", () => {
  assert.equal(gapJump([[0, 4], [5, 9]], 3.99), 5.01);
  assert.equal(gapJump([[0, 4], [5, 9]], 4.5), 5.01);
  assert.equal(gapJump([[0, 4], [5, 9]], 2.0), null);
  // An input that stalled for 16 s left a hole: the media after it plays (a gap, not a freeze).
  assert.equal(gapJump([[0, 4], [20, 30]], 4.0), 20.01);
  // ...but not a jump beyond maxGapJumpS (timestamps gone wrong).
  assert.equal(gapJump([[0, 4], [4 + P.maxGapJumpS + 1, 400]], 4.0), null);
  assert.equal(gapJump([[0, 4]], 4.0), null);
});

test("long chunks: the buffer aimed for grows by their extra length, so none is seeked over", () => {
  // A 10 s chunk just appended behind 1 s of older media: no seek, no speed-up.
  assert.deepEqual(catchUp([[0, 20]], 9, P, 10), { seekTo: null, rate: 1 });
  // With 1 s chunks the same buffer is far behind: seek.
  assert.equal(catchUp([[0, 20]], 9, P, 1).seekTo, 20 - P.targetBufferS);
  // Far behind even for 10 s chunks: seek to the larger target.
  const target = P.targetBufferS + 10 - P.nominalChunkS;
  assert.equal(catchUp([[0, 40]], 10, P, 10).seekTo, 40 - target);
  // A start on a stream of 4 s chunks keeps more than one chunk ahead of the playhead.
  assert.equal(startPosition([[0, 12]], P, 4), 12 - (P.targetBufferS + 3));
  assert.equal(startPosition([[0, 12]], P, 1), 12 - P.targetBufferS);
});

test("trim: keep some media behind the playhead, remove rarely", () => {
  assert.equal(trimRange([[0, 30]], 12), null); // only 2 s could go
  assert.deepEqual(trimRange([[0, 30]], 20), [0, 20 - P.keepBehindS]);
  assert.deepEqual(trimRange([[3, 30]], 20, { ...P, keepBehindS: 2, trimMinS: 1 }), [3, 18]);
});

test("buffer ahead counts only the contiguous range under the playhead", () => {
  assert.equal(bufferAheadS([[0, 4], [5, 9]], 3), 1);
  assert.equal(bufferAheadS([[0, 4], [5, 9]], 4.5), 0);
});

test("rate meters: bits per second over the window; counters feed increments", () => {
  const m = new RateMeter(2);
  m.add(1000, 0);
  m.add(1000, 1);
  assert.equal(m.rateBps(1.5), 8000);
  assert.equal(m.rateBps(2.5), 4000); // the first sample left the window
  const c = new CounterRate(1);
  assert.equal(c.update(100, 0), 0);
  assert.equal(c.update(600, 0.5), 4000);
  assert.equal(c.update(600, 5), 0);
});

test("stats carry streamer watch's field names and the peer share", () => {
  const core = {
    startup_s: 1.2,
    continuity: 0.98,
    lag_s_p50: 2,
    lag_s_p95: 3,
    chunks_played: 49,
    chunks_missed: 1,
    bytes_from_source: 250,
    bytes_from_peers: 750,
    bytes_uploaded: 500,
    upload_stopped_s: 7.5,
    uplink_delivered_bps: 300000,
    exchange_hints: 4,
    signals_relayed: 2,
    signals_dropped: 0,
    startup_phases: { first_link_s: 0.4, play_s: 1.2 },
  };
  const s = assembleStats(core, { first_frame_s: 0.9, buffer_s: 1.5 }, { state: "live" });
  for (const key of Object.keys(core)) assert.ok(key in s, key);
  assert.equal(s.startup_s, 0.9); // the page's own first frame wins over the core's model
  assert.equal(s.core_startup_s, 1.2);
  assert.deepEqual(s.startup_phases, { first_link_s: 0.4, play_s: 1.2 });
  assert.equal(s.peer_share, 0.75);
  assert.equal(s.state, "live");
  assert.equal(peerShare(0, 0), null);
  const empty = assembleStats(null, null, {});
  assert.equal(empty.bytes_from_peers, 0);
  assert.equal(empty.continuity, null);
  assert.equal(empty.upload_stopped_s, null);
});

test("graph layout: broadcaster first (on top), every node on the circle", () => {
  const nodes = graphLayout(
    [
      { peerId: "b", role: "viewer" },
      { peerId: "a", role: "relay" },
      { peerId: "z", role: "broadcaster" },
    ],
    100,
  );
  assert.deepEqual(
    nodes.map((n) => n.role),
    ["broadcaster", "relay", "viewer"],
  );
  assert.ok(Math.abs(nodes[0].x) < 1e-9 && Math.abs(nodes[0].y + 100) < 1e-9);
  for (const n of nodes) assert.ok(Math.abs(Math.hypot(n.x, n.y) - 100) < 1e-9);
});

test("token bucket caps upload and says how long to wait", () => {
  const b = new TokenBucket(1000, 2000, 0);
  assert.ok(b.canSend(2000, 0));
  b.take(2000, 0);
  assert.equal(b.canSend(500, 0), false);
  assert.equal(b.waitS(500, 0), 0.5);
  assert.ok(b.canSend(500, 0.5));
  const free = new TokenBucket(0, 1, 0);
  assert.ok(free.unlimited && free.canSend(1e9, 0) && free.waitS(1e9, 0) === 0);
});

test("signaling: server messages validated, malformed ones refused", () => {
  const w = parseServerMessage(
    JSON.stringify({
      type: "welcome",
      peer_id: "abc",
      channel: "demo",
      ice_servers: [],
      media: null,
      peers: [
        { peer_id: "p1", role: "relay", latest_seq: 7 },
        { peer_id: "p2", role: "admin" },
        { role: "viewer" },
        5,
      ],
      heartbeat_s: 20,
    }),
  );
  assert.equal(w.peerId, "abc");
  // A role outside the vocabulary is read as a viewer's.
  assert.deepEqual(w.peers, [
    { peerId: "p1", role: "relay", latestSeq: 7 },
    { peerId: "p2", role: "viewer", latestSeq: null },
  ]);
  assert.equal(parseServerMessage("not json"), null);
  assert.equal(parseServerMessage(JSON.stringify({ type: "welcome" })), null);
  assert.equal(parseServerMessage(JSON.stringify({ type: "signal", from: "x", data: 3 })), null);
  // Peer ids are the server's: at most 32 of [A-Za-z0-9_-].
  assert.equal(parseServerMessage(JSON.stringify({ type: "signal", from: "x".repeat(33), data: {} })), null);
  assert.equal(parseServerMessage(JSON.stringify({ type: "signal", from: "a/b", data: {} })), null);
  assert.equal(parseServerMessage(JSON.stringify({ type: "signal", from: "x".repeat(32), data: {} })).from.length, 32);
  assert.equal(parseServerMessage(JSON.stringify({ type: "surprise" })), null);
  const servers = [{ urls: ["turn:h:3478"], username: "1800000000:p", credential: "c" }];
  assert.deepEqual(parseServerMessage(JSON.stringify({ type: "ice_servers", ice_servers: servers })), {
    type: "ice_servers",
    iceServers: servers,
  });
  assert.equal(parseServerMessage(JSON.stringify({ type: "ice_servers", ice_servers: 7 })), null);
  assert.equal(parseServerMessage("[1,2]"), null);
  const e = parseServerMessage(JSON.stringify({ type: "error", code: "channel_full", fatal: true }));
  assert.deepEqual(e, { type: "error", code: "channel_full", message: "", fatal: true });
});

test("signaling: reconnect backoff doubles, is capped and fully jittered", () => {
  assert.equal(backoffDelayS(0, () => 0.5), 0.25);
  assert.equal(backoffDelayS(3, () => 0.5), 2);
  assert.equal(backoffDelayS(30, () => 0.5), 2.5); // capped at 5 s: within a server's grace
  assert.equal(backoffDelayS(1e9, () => 0.999), 4.995);
  assert.equal(backoffDelayS(30, () => 0), 0); // full jitter: anywhere from at once to the cap
  // Many clients that lost one server spread over the whole window, not one instant.
  let seed = 7;
  const lcg = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  const delays = Array.from({ length: 1000 }, () => backoffDelayS(2, lcg));
  const early = delays.filter((d) => d < 1).length;
  assert.ok(early > 400 && early < 600, `half in the first half of [0, 2): ${early}`);
  assert.ok(Math.max(...delays) < 2);
});

test("signaling: own server first, the others shuffled per client, no repeats", () => {
  const own = "wss://a.example/ws";
  const others = ["wss://b.example/ws", "wss://c.example/ws", own, "wss://b.example/ws"];
  assert.deepEqual(serverOrder(own, others, () => 0), [own, "wss://c.example/ws", "wss://b.example/ws"]);
  assert.deepEqual(serverOrder(own, others, () => 0.99), [own, "wss://b.example/ws", "wss://c.example/ws"]);
  assert.deepEqual(serverOrder(own, []), [own]);
});

test("signaling: every join carries the same peer secret, never an id", () => {
  const secret = newPeerSecret();
  assert.match(secret, /^[A-Za-z0-9_-]{24}$/);
  assert.ok(secret.length >= MIN_PEER_SECRET_CHARS);
  assert.notEqual(newPeerSecret(), secret);
  assert.deepEqual(joinMessage("live", "viewer", secret), {
    type: "join",
    v: 1,
    channel: "live",
    role: "viewer",
    peer_secret: secret,
  });
  assert.equal(joinMessage("live", "viewer", secret, true).want_peers, 0); // a rejoin
});

/**
 * Run body({FakeSocket, opened, timers}) with WebSockets that record what they send (opened: every
 * socket made) and a setTimeout that only queues (timers: {fn, ms}, run by hand).
 */
function withFakeSockets(body) {
  const opened = [];
  class FakeSocket {
    constructor(url) {
      this.url = url;
      this.sent = [];
      this.readyState = 1;
      opened.push(this);
    }
    send(text) {
      this.sent.push(JSON.parse(text));
    }
    close() {}
  }
  const timers = [];
  const realSetTimeout = globalThis.setTimeout;
  globalThis.setTimeout = (fn, ms) => timers.push({ fn, ms }) && timers.length;
  try {
    body({ FakeSocket, opened, timers });
  } finally {
    globalThis.setTimeout = realSetTimeout;
  }
}

test("signaling: a lost server is followed by the next one, with the same join", () => {
  withFakeSockets(({ FakeSocket, opened, timers }) => {
    const urls = ["ws://a/ws", "ws://b/ws", "ws://c/ws"];
    const client = new SignalingClient(urls, "live", {}, { WebSocketImpl: FakeSocket, random: () => 0.5 });
    client.connect();
    opened[0].onopen();
    opened[0].onclose(); // server a went away
    assert.equal(timers.length, 1);
    assert.equal(timers[0].ms, 250); // half of the first 0.5 s cap
    timers.shift().fn();
    assert.equal(opened[1].url, "ws://b/ws");
    opened[1].onopen();
    opened[1].onclose(); // b is down too
    assert.equal(timers[0].ms, 500);
    timers.shift().fn();
    assert.equal(opened[2].url, "ws://c/ws");
    opened[2].onopen();
    assert.deepEqual(opened[2].sent[0], opened[0].sent[0]);
    assert.equal(opened[0].sent[0].peer_secret, client.peerSecret);
    client.close();
  });
});

test("signaling: a rejoin after a welcome asks for no candidates", () => {
  withFakeSockets(({ FakeSocket, opened, timers }) => {
    const client = new SignalingClient(["ws://a/ws", "ws://b/ws"], "live", {}, {
      WebSocketImpl: FakeSocket,
      random: () => 0.5,
    });
    client.connect();
    opened[0].onopen();
    assert.equal(opened[0].sent[0].want_peers, undefined); // a first join gets candidates
    const welcome = { type: "welcome", peer_id: "abcdefghijk", channel: "live", peers: [] };
    opened[0].onmessage({ data: JSON.stringify(welcome) });
    opened[0].onclose();
    timers.shift().fn();
    opened[1].onopen();
    assert.equal(opened[1].sent[0].want_peers, 0);
    assert.equal(opened[1].sent[0].peer_secret, client.peerSecret);
    client.close();
  });
});

test("signaling: the servers a welcome names are checked, capped and tried after ours", () => {
  assert.deepEqual(
    parseFailoverUrls(["https://b.example", "ftp://c.example", 7, "http://d.example:8080/", "%"]),
    ["wss://b.example/ws", "ws://d.example:8080/ws"],
  );
  assert.deepEqual(parseFailoverUrls("https://b.example"), []);
  const many = Array.from({ length: 20 }, (_, i) => `https://s${i}.example`);
  assert.equal(parseFailoverUrls(many).length, 8);
  withFakeSockets(({ FakeSocket, opened, timers }) => {
    const client = new SignalingClient("ws://a/ws", "live", {}, { WebSocketImpl: FakeSocket });
    client.connect();
    opened[0].onopen();
    const welcome = { type: "welcome", v: 1, peer_id: "p1", channel: "live", role: "viewer" };
    const failover_urls = ["http://b", "http://a"]; // a is ours already
    opened[0].onmessage({ data: JSON.stringify({ ...welcome, failover_urls }) });
    assert.deepEqual(client.urls, ["ws://a/ws", "ws://b/ws"]);
    opened[0].onclose(); // a went away: b next
    timers.shift().fn();
    assert.equal(opened[1].url, "ws://b/ws");
    client.close();
  });
});

test("media description: valid one parsed, hostile ones refused with a reason", () => {
  const good = {
    mime_type: 'video/mp4; codecs="avc1.64001e,mp4a.40.2"',
    chunk_seconds: 1,
    init_segment: Buffer.from("init-bytes").toString("base64"),
    public_key: Buffer.alloc(32, 7).toString("base64"),
    bitrate_bps: 1000000,
    first_seq: 5,
  };
  const m = parseMedia(good);
  assert.equal(m.publicKey.length, 32);
  assert.equal(new TextDecoder().decode(m.initSegment), "init-bytes");
  assert.equal(m.firstSeq, 5);
  const bad = [
    null,
    { ...good, mime_type: 5 },
    { ...good, chunk_seconds: 0 },
    { ...good, chunk_seconds: "1" },
    { ...good, public_key: Buffer.alloc(31).toString("base64") },
    { ...good, public_key: "!!!" },
    { ...good, init_segment: "" },
    { ...good, init_segment: "A".repeat(200000) },
    { ...good, key_type: "rsa" },
  ];
  for (const b of bad) assert.throws(() => parseMedia(b), MediaError, JSON.stringify(b)?.slice(0, 80));
});

test("rtc: glare rule and trickled candidates", () => {
  assert.equal(keepsOwnOffer("b", "a"), true);
  assert.equal(keepsOwnOffer("a", "b"), false);
  assert.equal(parseCandidate({ candidate: "" }), null);
  assert.deepEqual(parseCandidate({ candidate: "candidate:1 1 udp 1 127.0.0.1 9 typ host" }), {
    candidate: "candidate:1 1 udp 1 127.0.0.1 9 typ host",
    sdpMid: null,
    sdpMLineIndex: 0,
  });
  assert.throws(() => parseCandidate({ candidate: 5 }));
  assert.throws(() => parseCandidate({ candidate: "x".repeat(2000) }));
  assert.throws(() => parseCandidate({ candidate: "c", sdpMLineIndex: "0" }));
  assert.deepEqual(
    sanitizeIceServers([
      { urls: ["stun:s.example:3478", "http://bad"] },
      { urls: "turn:t.example", username: "u", credential: "c" },
      { urls: ["ftp://x"] },
      "junk",
    ]),
    [
      { urls: ["stun:s.example:3478"] },
      { urls: ["turn:t.example"], username: "u", credential: "c" },
    ],
  );
});
