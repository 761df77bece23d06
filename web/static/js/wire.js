// The peer wire protocol in JavaScript: bytes <-> message objects (docs/protocol.md is the spec).
//
// Why a port and not a wrapper: the page is a full peer and must speak exactly what the Python
// peers speak. This module mirrors streamer/protocol/codec.py byte for byte and is checked against
// the same golden vectors (tests/vectors/*.json) by tests/js/wire.test.mjs.
//
// Rules this module never breaks:
// - big-endian integers; every message at most MAX_MESSAGE_BYTES;
// - decodeMessage throws only ProtocolError on malformed input (never RangeError, TypeError...)
//   and returns {type: "unknown", typeByte} for a type byte it does not know (receivers ignore it);
// - encodeMessage throws RangeError for values the format cannot carry, so a bug on our side never
//   puts a malformed message on the wire;
// - pure: no DOM, no timers, no network.
//
// Messages are plain objects with a `type` string and camelCase fields:
//   {type: "hello", version, role, capabilities}      role: Role.*, capabilities: Capability bits
//   {type: "buffer_map", baseSeq, bits: boolean[]}
//   {type: "have", seq, pieces: boolean[]}
//   {type: "request", seq, firstIndex, count, wantHeader}
//   {type: "chunk_header", seq, epoch, startUs, durationUs, releaseUs, totalSize, pieceSize,
//    pieceHashes: Uint8Array[], signature: Uint8Array, raw?: Uint8Array}
//   {type: "piece", seq, index, count, payload: Uint8Array}
//   {type: "cancel" | "absent", seq, firstIndex, count}
//   {type: "bye", reason, text}
//   {type: "peers", peerIds: string[]}
//   {type: "signal", to, from, payload}               payload: a string (UTF-8 JSON, opaque)
//   {type: "unknown", typeByte}
// A decoded chunk header keeps its exact bytes in `raw`: the signature covers them, and the 64-bit
// microsecond fields become Numbers (exact below 2**53 us, i.e. for any real clock).

export const PROTOCOL_VERSION = 2;
export const MAX_MESSAGE_BYTES = 65535;
export const PIECE_OVERHEAD_BYTES = 9;
export const MAX_PIECE_BYTES = MAX_MESSAGE_BYTES - PIECE_OVERHEAD_BYTES;
export const MAX_PIECES_PER_CHUNK = 1024;
export const MAX_BUFFER_MAP_BITS = 4096;
export const MAX_BYE_TEXT_BYTES = 255;
export const HASH_BYTES = 32;
export const SIGNATURE_BYTES = 64;
/** type u8, seq u32, epoch u32, start_us u64, duration_us u32, release_us u64, total_size u32,
 * piece_size u16, piece_count u16 (then the hashes, then the signature). */
export const HEADER_FIXED_BYTES = 37;
export const REQUEST_FLAG_HEADER = 0x01;
/** A peers message lists at most this many ids (a hint list, not a directory). */
export const MAX_PEERS_LISTED = 16;
/** A relayed WebRTC offer, answer or ICE candidate (UTF-8 JSON) is at most this long. */
export const MAX_SIGNAL_PAYLOAD_BYTES = 16384;
/** The signaling server's peer-id pattern (signaling_wire.PEER_ID_RE; checked by a test). */
export const PEER_ID_PATTERN = /^[A-Za-z0-9_-]{1,32}$/;
/** Range count meaning "to the end of the chunk" (ranges are clamped to the piece count). */
export const ALL_PIECES = 0xffff;

/** Ascending piece indices -> [[first, count]] of contiguous runs (one range message each). */
export function pieceRuns(indices) {
  const out = [];
  for (const i of indices) {
    const last = out[out.length - 1];
    if (last && last[0] + last[1] === i) last[1] += 1;
    else out.push([i, 1]);
  }
  return out;
}

export const MsgType = Object.freeze({
  HELLO: 0x01,
  BUFFER_MAP: 0x02,
  HAVE: 0x03,
  REQUEST: 0x04,
  CHUNK_HEADER: 0x05,
  PIECE: 0x06,
  CANCEL: 0x07,
  ABSENT: 0x08,
  BYE: 0x09,
  PEERS: 0x0a,
  SIGNAL: 0x0b,
});

/**
 * Messages sent on the connection's unordered channel (docs/protocol.md, Transport): each waits
 * for no earlier message and none waits for it, so a lost request delays only its own pieces.
 */
export const UNORDERED_TYPES = Object.freeze([MsgType.REQUEST, MsgType.PIECE]);

/** Whether an encoded message goes on the unordered channel. */
export function travelsUnordered(msg) {
  return UNORDERED_TYPES.includes(msg[0]);
}

export const Role = Object.freeze({ SOURCE: 0, RELAY: 1, VIEWER: 2 });
const ROLE_NAMES = ["source", "relay", "viewer"];

export const Capability = Object.freeze({ NONE: 0, UPLOAD: 0x1, PARTIAL: 0x2 });

export const ByeReason = Object.freeze({
  NORMAL: 0,
  FULL: 1,
  PROTOCOL_ERROR: 2,
  FORGED: 3,
  STALLED: 4,
  SHUTDOWN: 5,
  VERSION: 6,
});

const U32_MAX = 0xffffffff;
const U64_MAX = (1n << 64n) - 1n;

/** A peer sent bytes that break docs/protocol.md: the sender is to be dropped. */
export class ProtocolError extends Error {
  constructor(message) {
    super(message);
    this.name = "ProtocolError";
  }
}

// ------------------------------------------------------------------ helpers

/** MSB-first bitfield: bit i is byte i >> 3, mask 0x80 >> (i & 7); padding bits zero. */
export function packBits(bits) {
  const out = new Uint8Array((bits.length + 7) >> 3);
  for (let i = 0; i < bits.length; i++) {
    if (bits[i]) out[i >> 3] |= 0x80 >> (i & 7);
  }
  return out;
}

/** Inverse of packBits; a wrong length or nonzero padding bits are malformed. */
export function unpackBits(data, count, what) {
  if (data.length !== (count + 7) >> 3) {
    throw new ProtocolError(`${what}: bitfield of ${data.length} bytes for ${count} bits`);
  }
  const bits = new Array(count);
  for (let i = 0; i < count; i++) bits[i] = (data[i >> 3] & (0x80 >> (i & 7))) !== 0;
  if (count % 8 && data[data.length - 1] & (0xff >> (count % 8))) {
    throw new ProtocolError(`${what}: nonzero padding bits`);
  }
  return bits;
}

/** Accept Uint8Array, ArrayBuffer or any ArrayBufferView (a data channel gives ArrayBuffer). */
export function asBytes(data) {
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) {
    return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  }
  throw new TypeError("a message is binary (Uint8Array or ArrayBuffer)");
}

function isUint(value, max) {
  return Number.isInteger(value) && value >= 0 && value <= max;
}

function checkSeq(seq) {
  if (!isUint(seq, U32_MAX)) throw new RangeError(`seq ${seq} does not fit in 32 bits`);
}

function checkRange(first, count) {
  if (!isUint(first, MAX_PIECES_PER_CHUNK - 1) || !isUint(count, 0xffff) || count < 1) {
    throw new RangeError(`piece range first=${first} count=${count} invalid`);
  }
}

function toU64(value, what) {
  if (!Number.isInteger(value) || value < 0) throw new RangeError(`${what} ${value} is not a u64`);
  const big = BigInt(value);
  if (big > U64_MAX) throw new RangeError(`${what} ${value} does not fit in 64 bits`);
  return big;
}

const utf8Encoder = new TextEncoder();
const utf8Strict = new TextDecoder("utf-8", { fatal: true });

/** Cut UTF-8 to at most maxBytes without splitting a character (as Python's "ignore" does). */
function utf8Truncated(text, maxBytes) {
  const bytes = utf8Encoder.encode(text);
  if (bytes.length <= maxBytes) return bytes;
  let end = maxBytes;
  while (end > 0 && (bytes[end] & 0xc0) === 0x80) end--; // back up to a character boundary
  return bytes.slice(0, end);
}

function concat(parts) {
  let size = 0;
  for (const p of parts) size += p.length;
  const out = new Uint8Array(size);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

// ------------------------------------------------------------------ chunk header (structure)

/** Number of pieces a chunk of totalSizeBytes splits into (the last one may be short). */
export function pieceCountFor(totalSizeBytes, pieceSizeBytes) {
  return Math.ceil(totalSizeBytes / pieceSizeBytes);
}

/** The bytes the header's signature covers: the encoded message up to the signature. */
export function headerSignedBytes(header) {
  if (header.raw) return header.raw.subarray(0, header.raw.length - SIGNATURE_BYTES);
  checkSeq(header.seq);
  const count = header.pieceHashes.length;
  if (!isUint(header.epoch ?? 0, U32_MAX)) {
    throw new RangeError("chunk header epoch does not fit in 32 bits");
  }
  if (!isUint(header.durationUs, U32_MAX) || !isUint(header.totalSize, U32_MAX)) {
    throw new RangeError("chunk header duration or size does not fit in 32 bits");
  }
  if (!isUint(header.pieceSize, 0xffff) || !isUint(count, 0xffff)) {
    throw new RangeError("chunk header piece size or count does not fit in 16 bits");
  }
  const out = new Uint8Array(HEADER_FIXED_BYTES + count * HASH_BYTES);
  const view = new DataView(out.buffer);
  view.setUint8(0, MsgType.CHUNK_HEADER);
  view.setUint32(1, header.seq);
  view.setUint32(5, header.epoch ?? 0);
  view.setBigUint64(9, toU64(header.startUs, "start_us"));
  view.setUint32(17, header.durationUs);
  view.setBigUint64(21, toU64(header.releaseUs, "release_us"));
  view.setUint32(29, header.totalSize);
  view.setUint16(33, header.pieceSize);
  view.setUint16(35, count);
  header.pieceHashes.forEach((h, i) => {
    if (h.length !== HASH_BYTES) throw new RangeError(`piece hash ${i} is not ${HASH_BYTES} bytes`);
    out.set(h, HEADER_FIXED_BYTES + i * HASH_BYTES);
  });
  return out;
}

function encodeChunkHeader(header) {
  if (header.raw) return header.raw;
  if (!(header.signature instanceof Uint8Array) || header.signature.length !== SIGNATURE_BYTES) {
    throw new RangeError("chunk header signature is not 64 bytes");
  }
  return concat([headerSignedBytes(header), header.signature]);
}

/** Parse a CHUNK_HEADER message (type byte included): structure only, not the signature. */
export function decodeChunkHeader(data) {
  if (data.length < HEADER_FIXED_BYTES + SIGNATURE_BYTES) {
    throw new ProtocolError(`chunk header truncated: ${data.length} bytes`);
  }
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const seq = view.getUint32(1);
  const epoch = view.getUint32(5);
  const startUs = Number(view.getBigUint64(9));
  const durationUs = view.getUint32(17);
  const releaseUs = Number(view.getBigUint64(21));
  const totalSize = view.getUint32(29);
  const pieceSize = view.getUint16(33);
  const count = view.getUint16(35);
  if (count < 1 || count > MAX_PIECES_PER_CHUNK) {
    throw new ProtocolError(
      `chunk header piece count ${count} outside 1..${MAX_PIECES_PER_CHUNK}`,
    );
  }
  if (pieceSize < 1 || pieceSize > MAX_PIECE_BYTES) {
    throw new ProtocolError(`chunk header piece size ${pieceSize} outside 1..${MAX_PIECE_BYTES}`);
  }
  if (totalSize < 1 || pieceCountFor(totalSize, pieceSize) !== count) {
    throw new ProtocolError(
      `chunk header size ${totalSize} with piece size ${pieceSize} does not give ${count} pieces`,
    );
  }
  const expected = HEADER_FIXED_BYTES + count * HASH_BYTES + SIGNATURE_BYTES;
  if (data.length !== expected) {
    throw new ProtocolError(`chunk header length ${data.length}, expected ${expected}`);
  }
  const raw = data.slice(); // own copy: the caller's buffer may be reused
  const pieceHashes = [];
  for (let i = 0; i < count; i++) {
    const at = HEADER_FIXED_BYTES + i * HASH_BYTES;
    pieceHashes.push(raw.subarray(at, at + HASH_BYTES));
  }
  return {
    type: "chunk_header",
    seq,
    epoch,
    startUs,
    durationUs,
    releaseUs,
    totalSize,
    pieceSize,
    pieceHashes,
    signature: raw.subarray(expected - SIGNATURE_BYTES),
    raw,
  };
}

// ------------------------------------------------------------------ peer ids (peers, signal)

/** u8 length then the id's ASCII bytes; RangeError for an id outside the pattern. */
function peerIdBytes(peerId) {
  if (typeof peerId !== "string" || !PEER_ID_PATTERN.test(peerId)) {
    throw new RangeError(`peer id ${JSON.stringify(peerId)} does not match the peer-id pattern`);
  }
  const out = new Uint8Array(1 + peerId.length);
  out[0] = peerId.length;
  for (let i = 0; i < peerId.length; i++) out[1 + i] = peerId.charCodeAt(i);
  return out;
}

/** The length-prefixed id at `at` and the offset after it; ProtocolError if malformed. */
function readPeerId(data, at, what) {
  if (at >= data.length) throw new ProtocolError(`${what}: truncated before a peer id`);
  const end = at + 1 + data[at];
  if (end > data.length) throw new ProtocolError(`${what}: peer id runs past the end`);
  const text = String.fromCharCode(...data.subarray(at + 1, end));
  if (!PEER_ID_PATTERN.test(text)) throw new ProtocolError(`${what}: malformed peer id`);
  return [text, end];
}

function decodePeers(data) {
  if (data.length < 2) throw new ProtocolError("peers: truncated");
  const count = data[1];
  if (count > MAX_PEERS_LISTED) {
    throw new ProtocolError(`peers: ${count} ids (max ${MAX_PEERS_LISTED})`);
  }
  const peerIds = [];
  let at = 2;
  for (let i = 0; i < count; i++) {
    const [peerId, next] = readPeerId(data, at, "peers");
    peerIds.push(peerId);
    at = next;
  }
  if (at !== data.length) {
    throw new ProtocolError(`peers: ${data.length - at} bytes after the last id`);
  }
  return { type: "peers", peerIds };
}

function decodeSignal(data) {
  const [to, afterTo] = readPeerId(data, 1, "signal");
  const [from, at] = readPeerId(data, afterTo, "signal");
  if (at + 2 > data.length) throw new ProtocolError("signal: truncated before the payload length");
  const size = (data[at] << 8) | data[at + 1];
  if (size > MAX_SIGNAL_PAYLOAD_BYTES) {
    throw new ProtocolError(`signal: payload of ${size} bytes (max ${MAX_SIGNAL_PAYLOAD_BYTES})`);
  }
  exact(data, at + 2 + size, "signal");
  let payload;
  try {
    payload = utf8Strict.decode(data.subarray(at + 2));
  } catch {
    throw new ProtocolError("signal: payload is not UTF-8");
  }
  return { type: "signal", to, from, payload };
}

// ------------------------------------------------------------------ encode

/** Encode one message object to bytes; RangeError for values the wire format cannot carry. */
export function encodeMessage(msg) {
  let out;
  switch (msg.type) {
    case "hello": {
      if (!isUint(msg.version, 0xff) || !isUint(msg.role, 0xff)) {
        throw new RangeError("hello: version or role does not fit in a byte");
      }
      if (!isUint(msg.capabilities, U32_MAX)) throw new RangeError("hello: bad capabilities");
      out = new Uint8Array(7);
      const v = new DataView(out.buffer);
      v.setUint8(0, MsgType.HELLO);
      v.setUint8(1, msg.version);
      v.setUint8(2, msg.role);
      v.setUint32(3, msg.capabilities);
      break;
    }
    case "buffer_map":
    case "have": {
      const isMap = msg.type === "buffer_map";
      const seq = isMap ? msg.baseSeq : msg.seq;
      const bits = isMap ? msg.bits : msg.pieces;
      checkSeq(seq);
      if (isMap && bits.length > MAX_BUFFER_MAP_BITS) {
        throw new RangeError(`buffer map of ${bits.length} bits (max ${MAX_BUFFER_MAP_BITS})`);
      }
      if (!isMap && (bits.length < 1 || bits.length > MAX_PIECES_PER_CHUNK)) {
        throw new RangeError(`have with ${bits.length} pieces`);
      }
      const packed = packBits(bits);
      out = new Uint8Array(7 + packed.length);
      const v = new DataView(out.buffer);
      v.setUint8(0, isMap ? MsgType.BUFFER_MAP : MsgType.HAVE);
      v.setUint32(1, seq);
      v.setUint16(5, bits.length);
      out.set(packed, 7);
      break;
    }
    case "request": {
      checkSeq(msg.seq);
      checkRange(msg.firstIndex, msg.count);
      out = new Uint8Array(10);
      const v = new DataView(out.buffer);
      v.setUint8(0, MsgType.REQUEST);
      v.setUint32(1, msg.seq);
      v.setUint8(5, msg.wantHeader ? REQUEST_FLAG_HEADER : 0);
      v.setUint16(6, msg.firstIndex);
      v.setUint16(8, msg.count);
      break;
    }
    case "chunk_header":
      out = encodeChunkHeader(msg);
      break;
    case "piece": {
      checkSeq(msg.seq);
      if (!isUint(msg.index, MAX_PIECES_PER_CHUNK) || !isUint(msg.count, MAX_PIECES_PER_CHUNK)) {
        throw new RangeError(`piece index ${msg.index} of ${msg.count}`);
      }
      if (msg.index >= msg.count) throw new RangeError(`piece index ${msg.index} of ${msg.count}`);
      const payload = asBytes(msg.payload);
      if (payload.length < 1 || payload.length > MAX_PIECE_BYTES) {
        throw new RangeError(`piece payload of ${payload.length} bytes`);
      }
      out = new Uint8Array(PIECE_OVERHEAD_BYTES + payload.length);
      const v = new DataView(out.buffer);
      v.setUint8(0, MsgType.PIECE);
      v.setUint32(1, msg.seq);
      v.setUint16(5, msg.index);
      v.setUint16(7, msg.count);
      out.set(payload, PIECE_OVERHEAD_BYTES);
      break;
    }
    case "cancel":
    case "absent": {
      checkSeq(msg.seq);
      checkRange(msg.firstIndex, msg.count);
      out = new Uint8Array(9);
      const v = new DataView(out.buffer);
      v.setUint8(0, msg.type === "cancel" ? MsgType.CANCEL : MsgType.ABSENT);
      v.setUint32(1, msg.seq);
      v.setUint16(5, msg.firstIndex);
      v.setUint16(7, msg.count);
      break;
    }
    case "bye": {
      if (!isUint(msg.reason, 0xff)) throw new RangeError(`bye reason ${msg.reason}`);
      const text = utf8Truncated(msg.text ?? "", MAX_BYE_TEXT_BYTES);
      out = new Uint8Array(3 + text.length);
      out[0] = MsgType.BYE;
      out[1] = msg.reason;
      out[2] = text.length;
      out.set(text, 3);
      break;
    }
    case "peers": {
      if (msg.peerIds.length > MAX_PEERS_LISTED) {
        throw new RangeError(`peers with ${msg.peerIds.length} ids (max ${MAX_PEERS_LISTED})`);
      }
      const ids = msg.peerIds.map(peerIdBytes);
      out = concat([Uint8Array.of(MsgType.PEERS, msg.peerIds.length), ...ids]);
      break;
    }
    case "signal": {
      const payload = utf8Encoder.encode(msg.payload);
      if (payload.length > MAX_SIGNAL_PAYLOAD_BYTES) {
        throw new RangeError(`signal payload of ${payload.length} bytes`);
      }
      const size = Uint8Array.of(payload.length >> 8, payload.length & 0xff);
      const parts = [Uint8Array.of(MsgType.SIGNAL), peerIdBytes(msg.to), peerIdBytes(msg.from)];
      out = concat([...parts, size, payload]);
      break;
    }
    default:
      throw new RangeError(`cannot encode a message of type ${msg.type}`);
  }
  if (out.length > MAX_MESSAGE_BYTES) {
    throw new RangeError(`${msg.type} of ${out.length} bytes (max ${MAX_MESSAGE_BYTES})`);
  }
  return out;
}

// ------------------------------------------------------------------ decode

function exact(data, size, what) {
  if (data.length !== size) {
    throw new ProtocolError(`${what}: length ${data.length}, expected ${size}`);
  }
}

function rangeChecks(first, count, what) {
  if (first >= MAX_PIECES_PER_CHUNK) {
    throw new ProtocolError(`${what}: first index ${first} >= ${MAX_PIECES_PER_CHUNK}`);
  }
  if (count === 0) throw new ProtocolError(`${what}: empty piece range`);
}

/** Decode one message; ProtocolError for anything malformed, type "unknown" for unknown types. */
export function decodeMessage(input) {
  let data;
  try {
    data = asBytes(input);
  } catch {
    throw new ProtocolError("a message must be binary");
  }
  if (data.length === 0) throw new ProtocolError("empty message");
  if (data.length > MAX_MESSAGE_BYTES) {
    throw new ProtocolError(`oversize message: ${data.length} bytes (max ${MAX_MESSAGE_BYTES})`);
  }
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const kind = data[0];
  switch (kind) {
    case MsgType.HELLO: {
      exact(data, 7, "hello");
      const role = view.getUint8(2);
      if (role > Role.VIEWER) throw new ProtocolError(`hello: unknown role ${role}`);
      return {
        type: "hello",
        version: view.getUint8(1),
        role,
        capabilities: view.getUint32(3),
      };
    }
    case MsgType.BUFFER_MAP:
    case MsgType.HAVE: {
      const isMap = kind === MsgType.BUFFER_MAP;
      const what = isMap ? "buffer map" : "have";
      if (data.length < 7) throw new ProtocolError(`${what}: truncated (${data.length} bytes)`);
      const seq = view.getUint32(1);
      const count = view.getUint16(5);
      const bits = unpackBits(data.subarray(7), count, what);
      if (isMap) {
        if (count > MAX_BUFFER_MAP_BITS) {
          throw new ProtocolError(`buffer map: ${count} bits (max ${MAX_BUFFER_MAP_BITS})`);
        }
        return { type: "buffer_map", baseSeq: seq, bits };
      }
      if (count < 1 || count > MAX_PIECES_PER_CHUNK) {
        throw new ProtocolError(`have: piece count ${count} outside 1..${MAX_PIECES_PER_CHUNK}`);
      }
      return { type: "have", seq, pieces: bits };
    }
    case MsgType.REQUEST: {
      exact(data, 10, "request");
      const flags = view.getUint8(5);
      const first = view.getUint16(6);
      const count = view.getUint16(8);
      rangeChecks(first, count, "request");
      if (flags & ~REQUEST_FLAG_HEADER) {
        throw new ProtocolError(`request: unknown flags 0x${flags.toString(16).padStart(2, "0")}`);
      }
      return {
        type: "request",
        seq: view.getUint32(1),
        firstIndex: first,
        count,
        wantHeader: (flags & REQUEST_FLAG_HEADER) !== 0,
      };
    }
    case MsgType.CHUNK_HEADER:
      return decodeChunkHeader(data);
    case MsgType.PIECE: {
      if (data.length <= PIECE_OVERHEAD_BYTES) {
        throw new ProtocolError(`piece: truncated (${data.length} bytes, no payload)`);
      }
      const index = view.getUint16(5);
      const count = view.getUint16(7);
      if (count < 1 || count > MAX_PIECES_PER_CHUNK) {
        throw new ProtocolError(`piece: count ${count} outside 1..${MAX_PIECES_PER_CHUNK}`);
      }
      if (index >= count) throw new ProtocolError(`piece: index ${index} >= count ${count}`);
      return {
        type: "piece",
        seq: view.getUint32(1),
        index,
        count,
        payload: data.slice(PIECE_OVERHEAD_BYTES), // own copy: stored and forwarded later
      };
    }
    case MsgType.CANCEL:
    case MsgType.ABSENT: {
      const what = kind === MsgType.CANCEL ? "cancel" : "absent";
      exact(data, 9, what);
      const first = view.getUint16(5);
      const count = view.getUint16(7);
      rangeChecks(first, count, what);
      return { type: what, seq: view.getUint32(1), firstIndex: first, count };
    }
    case MsgType.BYE: {
      if (data.length < 3) throw new ProtocolError(`bye: truncated (${data.length} bytes)`);
      exact(data, 3 + data[2], "bye");
      let text;
      try {
        text = utf8Strict.decode(data.subarray(3));
      } catch {
        throw new ProtocolError("bye: text is not UTF-8");
      }
      return { type: "bye", reason: data[1], text };
    }
    case MsgType.PEERS:
      return decodePeers(data);
    case MsgType.SIGNAL:
      return decodeSignal(data);
    default:
      return { type: "unknown", typeByte: kind };
  }
}

// ------------------------------------------------------------------ field view (vectors, logs)

export function toHex(bytes) {
  let out = "";
  for (const b of bytes) out += b.toString(16).padStart(2, "0");
  return out;
}

/** Lowercase or uppercase hex -> bytes; RangeError on odd length or a non-hex character. */
export function fromHex(text) {
  if (text.length % 2 || /[^0-9a-fA-F]/.test(text)) throw new RangeError("not a hex string");
  const out = new Uint8Array(text.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(text.slice(2 * i, 2 * i + 2), 16);
  return out;
}

const bitsText = (bits) => bits.map((b) => (b ? "1" : "0")).join("");
const textBits = (text) => Array.from(text, (c) => c === "1");

/**
 * The field view of streamer/protocol/jsonview.py (snake_case names, bitfields as "0"/"1" strings,
 * bytes as hex): what the golden vectors list, and a readable form for logs.
 */
export function messageToFields(msg) {
  switch (msg.type) {
    case "hello":
      return {
        type: "hello",
        version: msg.version,
        role: ROLE_NAMES[msg.role],
        capabilities: msg.capabilities,
      };
    case "buffer_map":
      return { type: "buffer_map", base_seq: msg.baseSeq, bits: bitsText(msg.bits) };
    case "have":
      return { type: "have", seq: msg.seq, pieces: bitsText(msg.pieces) };
    case "request":
      return {
        type: "request",
        seq: msg.seq,
        want_header: msg.wantHeader,
        first_index: msg.firstIndex,
        count: msg.count,
      };
    case "chunk_header":
      return {
        type: "chunk_header",
        seq: msg.seq,
        epoch: msg.epoch,
        start_us: msg.startUs,
        duration_us: msg.durationUs,
        release_us: msg.releaseUs,
        total_size: msg.totalSize,
        piece_size: msg.pieceSize,
        piece_count: msg.pieceHashes.length,
        piece_hashes: msg.pieceHashes.map(toHex),
        signature: toHex(msg.signature),
      };
    case "piece":
      return {
        type: "piece",
        seq: msg.seq,
        index: msg.index,
        count: msg.count,
        payload: toHex(msg.payload),
      };
    case "cancel":
    case "absent":
      return { type: msg.type, seq: msg.seq, first_index: msg.firstIndex, count: msg.count };
    case "bye":
      return { type: "bye", reason: msg.reason, text: msg.text };
    case "peers":
      return { type: "peers", peer_ids: [...msg.peerIds] };
    case "signal":
      return { type: "signal", to: msg.to, from: msg.from, payload: msg.payload };
    default:
      return { type: "unknown", type_byte: msg.typeByte };
  }
}

/** Inverse of messageToFields (throws on a malformed field view). */
export function messageFromFields(d) {
  switch (d.type) {
    case "hello": {
      const role = ROLE_NAMES.indexOf(d.role);
      if (role < 0) throw new RangeError(`unknown role ${d.role}`);
      return { type: "hello", version: d.version, role, capabilities: d.capabilities };
    }
    case "buffer_map":
      return { type: "buffer_map", baseSeq: d.base_seq, bits: textBits(d.bits) };
    case "have":
      return { type: "have", seq: d.seq, pieces: textBits(d.pieces) };
    case "request":
      return {
        type: "request",
        seq: d.seq,
        firstIndex: d.first_index,
        count: d.count,
        wantHeader: d.want_header,
      };
    case "chunk_header":
      return {
        type: "chunk_header",
        seq: d.seq,
        epoch: d.epoch,
        startUs: d.start_us,
        durationUs: d.duration_us,
        releaseUs: d.release_us,
        totalSize: d.total_size,
        pieceSize: d.piece_size,
        pieceHashes: d.piece_hashes.map(fromHex),
        signature: fromHex(d.signature),
      };
    case "piece":
      return {
        type: "piece",
        seq: d.seq,
        index: d.index,
        count: d.count,
        payload: fromHex(d.payload),
      };
    case "cancel":
    case "absent":
      return { type: d.type, seq: d.seq, firstIndex: d.first_index, count: d.count };
    case "bye":
      return { type: "bye", reason: d.reason, text: d.text };
    case "peers":
      return { type: "peers", peerIds: [...d.peer_ids] };
    case "signal":
      return { type: "signal", to: d.to, from: d.from, payload: d.payload };
    case "unknown":
      return { type: "unknown", typeByte: d.type_byte };
    default:
      throw new RangeError(`unknown message type ${d.type}`);
  }
}

export { concat as concatBytes };
