// Signed chunk header: WebCrypto and the pure-JS fallback against the golden vector and forgeries.
import { test } from "node:test";
import assert from "node:assert/strict";
import { loadVector, fromHex, toHex } from "./helpers.mjs";
import { decodeMessage } from "../../web/static/js/wire.js";
import {
  HeaderVerifier,
  pieceLength,
  pieceOk,
  pieceOkAsync,
  splitPieces,
} from "../../web/static/js/chunkheader.js";
import { sha256, sha512 } from "../../web/static/js/sha2.js";
import { ed25519Verify } from "../../web/static/js/ed25519.js";

const vector = loadVector("chunk_header.json");
const publicKey = fromHex(vector.public_key);

/** The vectors' chunk: concat(sha256(uint32_be(i)) for i in 0..1249), 40,000 bytes. */
async function chunkData() {
  const out = new Uint8Array(1250 * 32);
  for (let i = 0; i < 1250; i++) {
    const n = new Uint8Array(4);
    new DataView(n.buffer).setUint32(0, i);
    out.set(new Uint8Array(await crypto.subtle.digest("SHA-256", n)), i * 32);
  }
  return out;
}

test("pure-JS sha256 and sha512 match WebCrypto on many lengths", async () => {
  for (const size of [0, 1, 55, 56, 63, 64, 65, 111, 112, 127, 128, 129, 1000, 16384, 100003]) {
    const data = new Uint8Array(size);
    for (let i = 0; i < size; i++) data[i] = (i * 131 + size) & 0xff;
    const d256 = new Uint8Array(await crypto.subtle.digest("SHA-256", data));
    const d512 = new Uint8Array(await crypto.subtle.digest("SHA-512", data));
    assert.equal(toHex(sha256(data)), toHex(d256), `sha256 of ${size} bytes`);
    if (size < 5000) assert.equal(toHex(sha512(data)), toHex(d512), `sha512 of ${size} bytes`);
  }
});

test("the vectors' chunk splits into pieces whose hashes the header lists", async () => {
  const data = await chunkData();
  assert.equal(toHex(sha256(data)), vector.chunk_data_sha256);
  const header = decodeMessage(fromHex(vector.header_hex));
  const pieces = splitPieces(data, header.pieceSize);
  assert.equal(pieces.length, vector.pieces.length);
  for (const p of vector.pieces) {
    assert.equal(pieces[p.index].length, p.length);
    assert.equal(pieceLength(header, p.index), p.length);
    assert.ok(pieceOk(header, p.index, pieces[p.index]));
    assert.ok(await pieceOkAsync(header, p.index, pieces[p.index]));
  }
  const forged = pieces[1].slice();
  forged[0] ^= 0x01;
  assert.equal(toHex(sha256(forged)), vector.forged[2].payload_sha256_of_forged);
  assert.equal(pieceOk(header, 1, forged), false);
  assert.equal(await pieceOkAsync(header, 1, forged), false);
  assert.equal(pieceOk(header, 0, pieces[2]), false, "right hash list, wrong index");
  assert.equal(pieceOk(header, 3, pieces[2]), false, "index out of range");
});

for (const forcePureJs of [false, true]) {
  const kind = forcePureJs ? "pure-js" : "webcrypto";
  test(`${kind}: the signed header verifies with its key; forged ones do not`, async () => {
    const verifier = await HeaderVerifier.create(publicKey, { forcePureJs });
    assert.equal(verifier.verifierKind, kind);
    const header = decodeMessage(fromHex(vector.header_hex));
    assert.equal(await verifier.verify(header), true);
    for (const forged of vector.forged.filter((f) => f.header_hex)) {
      assert.equal(await verifier.verify(decodeMessage(fromHex(forged.header_hex))), false, forged.why);
    }
    const other = await HeaderVerifier.create(fromHex(vector.header.piece_hashes[0]), { forcePureJs });
    assert.equal(await other.verify(header), false, "another key");
    assert.equal(verifier.checks, 3);
    assert.equal(await verifier.verify(decodeMessage(fromHex(vector.header_hex))), true);
    assert.equal(verifier.checks, 3, "a header heard twice is checked once");
  });
}

test("a verifier bound to an epoch refuses a genuine header of another broadcast session", async () => {
  const header = decodeMessage(fromHex(vector.header_hex));
  assert.equal(header.epoch, vector.header.epoch);
  const current = await HeaderVerifier.create(publicKey, { epoch: header.epoch });
  assert.equal(await current.verify(header), true);
  const restarted = await HeaderVerifier.create(publicKey, { epoch: header.epoch + 1 });
  assert.equal(await restarted.verify(header), false, "an old session's chunk is a replay");
  assert.equal(restarted.checks, 0, "refused before any signature check");
});

test("pure-JS ed25519 agrees with WebCrypto on fresh keys, messages and tampering", async () => {
  for (let round = 0; round < 3; round++) {
    const keys = await crypto.subtle.generateKey({ name: "Ed25519" }, true, ["sign", "verify"]);
    const raw = new Uint8Array(await crypto.subtle.exportKey("raw", keys.publicKey));
    const message = new Uint8Array(200 + round * 97).map((_, i) => (i * 7 + round) & 0xff);
    const signature = new Uint8Array(await crypto.subtle.sign({ name: "Ed25519" }, keys.privateKey, message));
    assert.equal(ed25519Verify(raw, signature, message), true);
    const badSig = signature.slice();
    badSig[40] ^= 0x10;
    assert.equal(ed25519Verify(raw, badSig, message), false);
    const badMsg = message.slice();
    badMsg[0] ^= 0x01;
    assert.equal(ed25519Verify(raw, signature, badMsg), false);
  }
  assert.equal(ed25519Verify(new Uint8Array(31), new Uint8Array(64), new Uint8Array(0)), false);
  const notOnCurve = new Uint8Array(32).fill(0xff);
  notOnCurve[31] = 0x7f; // y = 2**255 - 1 >= p
  assert.equal(ed25519Verify(notOnCurve, new Uint8Array(64), new Uint8Array(0)), false);
});

test("a key that is not 32 bytes is refused at once", async () => {
  await assert.rejects(HeaderVerifier.create(new Uint8Array(31)), RangeError);
});
