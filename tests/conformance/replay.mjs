// Feed traces (tests/conformance/traces.py describes the format) into fresh JS swarm cores.
//
//   node tests/conformance/replay.mjs TRACE.json...
//
// writes one JSON line per trace: {file, outputs: [one per step]} ({file, error, outputs so far}
// when the core threw). The outputs have the shape tests/conformance/traces.py's replay() gives,
// so pytest compares the two cores step by step. Header signatures are checked synchronously
// (node:crypto, the core's verifyHeaderSync), as the Python core's HeaderVerifier does.
import { createHash, createPrivateKey, createPublicKey, sign, verify } from "node:crypto";
import { readFileSync } from "node:fs";
import { DEFAULT_CONFIG, Role, SwarmPeer, seededRandom } from "../../web/static/js/swarm.js";
import { sha256, splitPieces } from "../../web/static/js/chunkheader.js";
import {
  SIGNATURE_BYTES,
  decodeChunkHeader,
  decodeMessage,
  encodeMessage,
  fromHex,
  headerSignedBytes,
  messageFromFields,
  messageToFields,
  toHex,
} from "../../web/static/js/wire.js";

const ROLES = { source: Role.SOURCE, relay: Role.RELAY, viewer: Role.VIEWER };

export const STATS_KEYS = [
  "role",
  "startup_s",
  "continuity",
  "lag_s_p50",
  "lag_s_p95",
  "chunks_played",
  "chunks_late",
  "chunks_missed",
  "lag_added_s",
  "stall_s",
  "reanchored_s",
  "reanchors",
  "paused_s",
  "longest_pause_s",
  "bytes_from_source",
  "bytes_from_peers",
  "bytes_uploaded",
  "bytes_duplicate",
  "timeouts",
  "rescues",
  "moved",
  "stream_bytes",
  "neighbours",
  "drops",
  "exchange_hints",
  "signals_relayed",
  "signals_dropped",
  "startup_phases",
];

/** Python's snake_case config field -> the JS name (max_have_interval_s -> maxHaveIntervalS). */
export function camelName(name) {
  return name.replace(/_([a-z])/g, (_, c) => c.toUpperCase());
}

/** A trace's config overrides in JS names; an unknown field is an error (the cores drifted). */
export function jsConfig(overrides = {}) {
  const out = {};
  for (const [key, value] of Object.entries(overrides)) {
    const name = camelName(key);
    if (!(name in DEFAULT_CONFIG)) throw new Error(`config field ${key} (${name}) unknown in JS`);
    out[name] = value;
  }
  return out;
}

/** A synchronous Ed25519 check against the raw 32-byte public key. */
export function syncVerifier(publicKeyHex) {
  const x = Buffer.from(publicKeyHex, "hex").toString("base64url");
  const key = createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x }, format: "jwk" });
  return (header) => verify(null, headerSignedBytes(header), key, header.signature);
}

/** The simulator's fixed test key (streamer/sim/scenario.py test_key: bytes 0..31). */
const TEST_KEY = (() => {
  const d = Buffer.from(Array.from({ length: 32 }, (_, i) => i)).toString("base64url");
  const privateKey = createPrivateKey({
    key: { kty: "OKP", crv: "Ed25519", d, x: "" },
    format: "jwk",
  });
  return privateKey;
})();

const chunkData = (seq, size) => new Uint8Array(size).fill(seq % 256);

/** The test key's header of a scenario's chunk spec (as traces.py's signed_header). */
function signedHeader(spec, releaseS = spec.release_s) {
  const data = chunkData(spec.seq, spec.size);
  const unsigned = {
    type: "chunk_header",
    seq: spec.seq,
    epoch: 0,
    startUs: Math.round(spec.start_s * 1e6),
    durationUs: Math.round(spec.duration_s * 1e6),
    releaseUs: Math.round(releaseS * 1e6),
    totalSize: data.length,
    pieceSize: spec.piece_size,
    pieceHashes: splitPieces(data, spec.piece_size).map((p) => sha256(p)),
  };
  const signed = headerSignedBytes(unsigned);
  const raw = new Uint8Array(signed.length + SIGNATURE_BYTES);
  raw.set(signed);
  raw.set(sign(null, signed, TEST_KEY), signed.length);
  return decodeChunkHeader(raw);
}

/**
 * A recv step's message: hex, a field view, or a chunk's header or piece; with "flip_byte": n,
 * byte n of it (from the end when negative) inverted (a forgery).
 */
function receivedBytes(s) {
  const data = Uint8Array.from(messageIn(s));
  if (s.flip_byte !== undefined) {
    const at = s.flip_byte < 0 ? data.length + s.flip_byte : s.flip_byte;
    if (at < 0 || at >= data.length) throw new Error(`flip_byte ${s.flip_byte} out of range`);
    data[at] ^= 0xff;
  }
  return data;
}

function messageIn(s) {
  if (s.hex !== undefined) return fromHex(s.hex);
  if (s.msg !== undefined) return encodeMessage(messageFromFields(s.msg));
  if (s.header !== undefined) return signedHeader(s.header).raw;
  const spec = s.piece;
  const pieces = splitPieces(chunkData(spec.seq, spec.size), spec.piece_size);
  return encodeMessage({
    type: "piece",
    seq: spec.seq,
    index: spec.index,
    count: pieces.length,
    payload: pieces[spec.index],
  });
}

const BULKY_FIELDS = ["payload", "piece_hashes", "signature"];

function messageOut(s, data) {
  if (data === null) return null;
  if (s.view !== "fields") return toHex(data);
  const fields = messageToFields(decodeMessage(data));
  for (const key of BULKY_FIELDS) delete fields[key];
  return fields;
}

/** One message (or null), or with "all": true every one queued, as a list. */
function messagesOut(s, take) {
  if (!s.all) return messageOut(s, take());
  const out = [];
  let data;
  while ((data = take()) !== null) out.push(messageOut(s, data));
  return out;
}

/** Where playout starts and stands (null before a viewer's start point and for a source). */
function playbackDict(core) {
  const pb = core.playback;
  if (pb === null || pb === undefined) return null;
  return {
    started: pb.started,
    start_seq: pb.startSeq,
    next_seq: pb.nextSeq,
    play_start_s: pb.playStartS,
  };
}

const sha = (data) => createHash("sha256").update(data).digest("hex");
const hexOrNull = (data) => (data === null ? null : toHex(data));

/** An event in the shape traces.py's event_dict gives. */
export function eventDict(ev) {
  switch (ev.kind) {
    case "ChunkComplete":
      return { kind: ev.kind, seq: ev.seq, sha256: sha(ev.data) };
    case "ChunkPlayed":
      return { kind: ev.kind, seq: ev.seq, lag_s: ev.lagS, sha256: sha(ev.data) };
    case "ChunkMissed":
      return { kind: ev.kind, seq: ev.seq };
    case "DropNeighbour":
      return { kind: ev.kind, peer: ev.peerId, reason: ev.reason, bye: hexOrNull(ev.bye) };
    case "WantNeighbours":
      return { kind: ev.kind, count: ev.count };
    case "PeerSignal":
      return { kind: ev.kind, from: ev.fromPeer, via: ev.via, payload: ev.payload };
    default:
      throw new Error(`unexpected event ${ev.kind}`);
  }
}

export function makeCore(init) {
  const role = ROLES[init.role];
  if (role === undefined) throw new Error(`unknown role ${init.role}`);
  return new SwarmPeer({
    role,
    now: init.now,
    config: jsConfig(init.config),
    rng: seededRandom(init.seed ?? 0),
    upload: init.upload ?? true,
    verifyHeaderSync: role === Role.SOURCE ? null : syncVerifier(init.public_key),
    peerId: init.peer_id ?? "",
  });
}

/** One step into core; its output (undefined for inputs). */
export function step(core, s) {
  switch (s.op) {
    case "add":
      return core.addNeighbour(s.peer, s.now);
    case "remove":
      core.removeNeighbour(s.peer, s.now);
      return null;
    case "recv":
      core.receive(s.peer, receivedBytes(s), s.now);
      return null;
    case "timer":
      core.handleTimer(s.now);
      return null;
    case "link_full":
      core.setLinkFull(s.peer, s.full);
      return null;
    case "uplink_delivered":
      core.uplinkDelivered(s.bytes, s.outstanding, s.now);
      return null;
    case "publish":
      if (s.chunk !== undefined) {
        const spec = { ...s.chunk, piece_size: core.config.pieceSizeBytes };
        core.publishChunk(signedHeader(spec, s.now), chunkData(spec.seq, spec.size), s.now);
      } else {
        core.publishChunk(decodeMessage(fromHex(s.header)), fromHex(s.data), s.now);
      }
      return null;
    case "ctl":
      return messagesOut(s, () => core.nextControlMessage(s.peer));
    case "data":
      return messagesOut(s, () => core.nextDataMessage(s.peer, s.now));
    case "ready":
      return [...core.takeReady()].sort();
    case "events": {
      const events = core.popEvents().map(eventDict);
      if (s.view !== "fields") return events;
      return events.map(({ sha256: _, bye: __, ...rest }) => rest);
    }
    case "next_timer":
      return core.nextTimer();
    case "upload_peers":
      return core.uploadPeers();
    case "has_room":
      return core.hasRoom();
    case "stats": {
      const stats = core.stats();
      const keys = s.fields ?? STATS_KEYS;
      const unknown = keys.filter((k) => !STATS_KEYS.includes(k));
      if (unknown.length) throw new Error(`stats fields ${unknown} are not shared`);
      return Object.fromEntries(keys.map((k) => [k, stats[k]]));
    }
    case "playback":
      return playbackDict(core);
    case "candidates":
      return core.exchangeCandidates(s.count, s.now);
    case "send_signal":
      return core.sendSignal(s.via, s.to, s.payload);
    default:
      throw new Error(`unknown op ${s.op}`);
  }
}

/** Every step of trace into a fresh core: {outputs} or {outputs so far, error}. */
export function replay(trace) {
  const outputs = [];
  try {
    const core = makeCore(trace.init);
    for (const s of trace.steps) outputs.push(step(core, s));
  } catch (err) {
    return { outputs, error: String(err?.stack ?? err) };
  }
  return { outputs };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  for (const file of process.argv.slice(2)) {
    const result = replay(JSON.parse(readFileSync(file, "utf8")));
    process.stdout.write(JSON.stringify({ file, ...result }) + "\n");
  }
}
