// The signed chunk header: verify the source's signature once, then every piece by its hash.
//
// Why: a peer must never play or forward bytes the broadcaster did not produce, yet waiting for a
// whole chunk before checking it adds a chunk time of lag per hop. The source signs (Ed25519) a
// small header listing the SHA-256 of each piece (streamer/protocol/chunk_header.py); a peer checks
// the signature once and each piece as it arrives, and may forward a checked piece at once.
//
// Signature: WebCrypto Ed25519 (`crypto.subtle.verify({name: "Ed25519"})`) when the page has it;
// otherwise (insecure origin such as plain http to a LAN address, or a browser without Ed25519 in
// WebCrypto) the pure-JS fallback in ed25519.js, so the page still works.
// `verifierKind` says which one is in use.
// Piece hashes: the synchronous pure-JS SHA-256 of sha2.js, so the swarm core checks a piece in the
// same call that receives it; `pieceOkAsync` uses crypto.subtle.digest for callers that prefer it.
// The header structure (encode/decode) lives in wire.js with the other messages.

import { ed25519Verify } from "./ed25519.js";
import { sha256 } from "./sha2.js";
import {
  MAX_PIECES_PER_CHUNK,
  MAX_PIECE_BYTES,
  SIGNATURE_BYTES,
  decodeChunkHeader,
  headerSignedBytes,
  pieceCountFor,
} from "./wire.js";

export { decodeChunkHeader, headerSignedBytes, pieceCountFor, sha256 };

/** Number of pieces of a header. */
export const pieceCount = (header) => header.pieceHashes.length;

/** Exact byte length of piece index (only the last piece may be shorter). */
export function pieceLength(header, index) {
  const count = header.pieceHashes.length;
  if (index < count - 1) return header.pieceSize;
  return header.totalSize - header.pieceSize * (count - 1);
}

/** Cut a chunk into pieces of pieceSizeBytes (the last may be shorter); views, not copies. */
export function splitPieces(data, pieceSizeBytes) {
  const out = [];
  for (let at = 0; at < data.length; at += pieceSizeBytes) {
    out.push(data.subarray(at, at + pieceSizeBytes));
  }
  return out;
}

function equalBytes(a, b) {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** True when payload is exactly piece index as the source produced it (synchronous). */
export function pieceOk(header, index, payload) {
  if (!(index >= 0 && index < header.pieceHashes.length)) return false;
  if (payload.length !== pieceLength(header, index)) return false;
  return equalBytes(sha256(payload), header.pieceHashes[index]);
}

/** pieceOk with WebCrypto's digest (needs a secure context). */
export async function pieceOkAsync(header, index, payload, subtle = globalThis.crypto?.subtle) {
  if (!(index >= 0 && index < header.pieceHashes.length)) return false;
  if (payload.length !== pieceLength(header, index)) return false;
  const digest = new Uint8Array(await subtle.digest("SHA-256", payload));
  return equalBytes(digest, header.pieceHashes[index]);
}

/**
 * Verifies chunk header signatures against the broadcaster's raw 32-byte Ed25519 public key.
 * Build it with `await HeaderVerifier.create(publicKeyRaw)`; `verify(header)` resolves to a
 * boolean and never rejects on bad input. A small cache of checked header bytes means a header
 * heard from several neighbours is checked once.
 */
export class HeaderVerifier {
  /** @param {Uint8Array} publicKeyRaw  @param {CryptoKey|null} cryptoKey  @param {string} kind */
  constructor(publicKeyRaw, cryptoKey, kind, cacheSize = 256, epoch = null) {
    this.publicKeyRaw = publicKeyRaw;
    /**
     * The broadcast session whose chunks we accept (null: any): a genuine header signed for
     * another session is a replay, refused like a forgery.
     */
    this.epoch = epoch;
    this.cryptoKey = cryptoKey;
    /** "webcrypto" or "pure-js": shown in the page's stats so a slow fallback is visible. */
    this.verifierKind = kind;
    this.cacheSize = cacheSize;
    this.cache = new Map();
    this.checks = 0;
  }

  /**
   * Pick WebCrypto when it can import an Ed25519 key here, else the pure-JS fallback.
   * Pass `{forcePureJs: true}` to test the fallback, `{epoch}` to accept only that broadcast
   * session's headers. Throws RangeError for a key not 32 bytes.
   */
  static async create(publicKeyRaw, options = {}) {
    const { subtle = globalThis.crypto?.subtle, forcePureJs = false, epoch = null } = options;
    if (!(publicKeyRaw instanceof Uint8Array) || publicKeyRaw.length !== 32) {
      throw new RangeError("an Ed25519 public key is 32 raw bytes");
    }
    if (!forcePureJs && subtle) {
      try {
        const key = await subtle.importKey("raw", publicKeyRaw, { name: "Ed25519" }, false, [
          "verify",
        ]);
        return new HeaderVerifier(publicKeyRaw, key, "webcrypto", 256, epoch);
      } catch {
        // No Ed25519 in this browser's WebCrypto: fall through to the pure-JS check.
      }
    }
    return new HeaderVerifier(publicKeyRaw, null, "pure-js", 256, epoch);
  }

  /** Resolve true when the header's signature is the source's over exactly its bytes. */
  async verify(header) {
    if (this.epoch !== null && header.epoch !== this.epoch) return false;
    let signed;
    try {
      signed = headerSignedBytes(header);
    } catch {
      return false;
    }
    const signature = header.signature;
    if (!(signature instanceof Uint8Array) || signature.length !== SIGNATURE_BYTES) return false;
    const cacheKey = toKey(signed, signature);
    const hit = this.cache.get(cacheKey);
    if (hit !== undefined) return hit;
    this.checks += 1;
    let ok;
    if (this.cryptoKey) {
      try {
        ok = await globalThis.crypto.subtle.verify(
          { name: "Ed25519" },
          this.cryptoKey,
          signature,
          signed,
        );
      } catch {
        ok = false;
      }
    } else {
      ok = ed25519Verify(this.publicKeyRaw, signature, signed);
    }
    this.cache.set(cacheKey, ok);
    if (this.cache.size > this.cacheSize) this.cache.delete(this.cache.keys().next().value);
    return ok;
  }
}

function toKey(signed, signature) {
  // The signature alone identifies a genuine header, but a forger could pair a real signature with
  // other bytes: key on both (a cheap hash of the signed bytes keeps the key short).
  let text = "";
  for (const b of signature) text += String.fromCharCode(b);
  for (const b of sha256(signed)) text += String.fromCharCode(b);
  return text;
}

/**
 * Hash and sign a chunk (the source's side; tests and a JS source use it). privateKey is a
 * WebCrypto Ed25519 CryptoKey. Resolves to a header object as wire.js decodes it (with `raw`).
 * Throws RangeError on a chunk the wire format cannot carry.
 */
export async function signChunkHeader(
  { seq, data, startUs, durationUs, releaseUs, pieceSize, privateKey, epoch = 0 },
  subtle = globalThis.crypto.subtle,
) {
  if (!(data instanceof Uint8Array) || data.length === 0) {
    throw new RangeError("a chunk must hold at least one byte");
  }
  if (!(pieceSize >= 1 && pieceSize <= MAX_PIECE_BYTES)) {
    throw new RangeError(`piece size ${pieceSize} outside 1..${MAX_PIECE_BYTES}`);
  }
  const count = pieceCountFor(data.length, pieceSize);
  if (count > MAX_PIECES_PER_CHUNK) {
    throw new RangeError(`${data.length} bytes need ${count} pieces (max ${MAX_PIECES_PER_CHUNK})`);
  }
  const unsigned = {
    type: "chunk_header",
    seq,
    epoch,
    startUs,
    durationUs,
    releaseUs,
    totalSize: data.length,
    pieceSize,
    pieceHashes: splitPieces(data, pieceSize).map((p) => sha256(p)),
  };
  const signed = headerSignedBytes(unsigned);
  const signature = new Uint8Array(await subtle.sign({ name: "Ed25519" }, privateKey, signed));
  const raw = new Uint8Array(signed.length + SIGNATURE_BYTES);
  raw.set(signed);
  raw.set(signature, signed.length);
  return decodeChunkHeader(raw);
}
