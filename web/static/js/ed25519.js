// Ed25519 signature verification in plain JavaScript (RFC 8032, section 5.1.7), with BigInt.
//
// Why: WebCrypto is missing on insecure origins (a page served over plain http to a LAN address),
// yet a peer must never play or forward a chunk the broadcaster did not sign. This is the fallback
// chunkheader.js uses when crypto.subtle cannot verify Ed25519. Verify only (no signing, no secret
// data), so constant time does not matter here. Cofactorless check, as OpenSSL does: encode
// [S]B - [k]A and compare it with R byte for byte; S must be below the group order L.
// A check costs a few tens of milliseconds: done once per chunk (1 s of video), that is fine.

import { sha512 } from "./sha2.js";

const P = (1n << 255n) - 19n;
const L = (1n << 252n) + 27742317777372353535851937790883648493n;
const mod = (a, m = P) => {
  const r = a % m;
  return r >= 0n ? r : r + m;
};

function powMod(base, exp, m = P) {
  let result = 1n;
  let b = mod(base, m);
  let e = exp;
  while (e > 0n) {
    if (e & 1n) result = (result * b) % m;
    b = (b * b) % m;
    e >>= 1n;
  }
  return result;
}

const inv = (a) => powMod(a, P - 2n);
const D = mod(-121665n * inv(121666n));
const D2 = mod(2n * D);
const SQRT_M1 = powMod(2n, (P - 1n) / 4n);

function leToBig(bytes) {
  let x = 0n;
  for (let i = bytes.length - 1; i >= 0; i--) x = (x << 8n) | BigInt(bytes[i]);
  return x;
}

// Points in extended coordinates (X, Y, Z, T) with x = X/Z, y = Y/Z, x*y = T/Z.
const ZERO = [0n, 1n, 1n, 0n];
const BASE_Y = mod(4n * inv(5n));
const BASE = (() => {
  const point = decompress(BASE_Y, 0);
  if (point === null) throw new Error("ed25519: base point does not decode");
  return point;
})();

/** Unified addition (add-2008-hwcd-3, a = -1): also correct for doubling. */
function add(p, q) {
  const [x1, y1, z1, t1] = p;
  const [x2, y2, z2, t2] = q;
  const a = mod((y1 - x1) * (y2 - x2));
  const b = mod((y1 + x1) * (y2 + x2));
  const c = mod(t1 * D2 * t2);
  const d = mod(2n * z1 * z2);
  const e = b - a;
  const f = d - c;
  const g = d + c;
  const h = b + a;
  return [mod(e * f), mod(g * h), mod(f * g), mod(e * h)];
}

function multiply(point, scalar) {
  let result = ZERO;
  let addend = point;
  let k = scalar;
  while (k > 0n) {
    if (k & 1n) result = add(result, addend);
    addend = add(addend, addend);
    k >>= 1n;
  }
  return result;
}

const negate = ([x, y, z, t]) => [mod(-x), y, z, mod(-t)];

/** The point with this y and x parity, or null when y is not on the curve. */
function decompress(y, sign) {
  if (y >= P) return null;
  const y2 = (y * y) % P;
  const u = mod(y2 - 1n);
  const v = mod(D * y2 + 1n);
  let x = mod(u * powMod(v, 3n) * powMod(u * powMod(v, 7n), (P - 5n) / 8n));
  const vx2 = mod(v * x * x);
  if (vx2 !== u) {
    if (vx2 !== mod(-u)) return null;
    x = mod(x * SQRT_M1);
  }
  if (x === 0n && sign === 1) return null;
  if (Number(x & 1n) !== sign) x = P - x;
  return [x, y, 1n, mod(x * y)];
}

function decodePoint(bytes) {
  const copy = bytes.slice();
  const sign = copy[31] >> 7;
  copy[31] &= 0x7f;
  return decompress(leToBig(copy), sign);
}

function encodePoint([x, y, z]) {
  const zi = inv(z);
  const ax = mod(x * zi);
  let ay = mod(y * zi);
  const out = new Uint8Array(32);
  for (let i = 0; i < 32; i++) {
    out[i] = Number(ay & 0xffn);
    ay >>= 8n;
  }
  out[31] |= Number(ax & 1n) << 7;
  return out;
}

/**
 * True when signature (64 bytes) is publicKey's (32 raw bytes) Ed25519 signature of message.
 * Malformed keys or signatures give false, never an exception.
 */
export function ed25519Verify(publicKey, signature, message) {
  if (publicKey.length !== 32 || signature.length !== 64) return false;
  const a = decodePoint(publicKey);
  if (a === null) return false;
  const s = leToBig(signature.subarray(32, 64));
  if (s >= L) return false;
  const input = new Uint8Array(64 + message.length);
  input.set(signature.subarray(0, 32), 0);
  input.set(publicKey, 32);
  input.set(message, 64);
  const k = mod(leToBig(sha512(input)), L);
  const r = encodePoint(add(multiply(BASE, s), negate(multiply(a, k))));
  for (let i = 0; i < 32; i++) if (r[i] !== signature[i]) return false;
  return true;
}
