// The JS codec against the golden vectors that the Python codec also checks (tests/vectors/).
import { test } from "node:test";
import assert from "node:assert/strict";
import { loadVector, fromHex, toHex } from "./helpers.mjs";
import {
  MAX_MESSAGE_BYTES,
  MAX_PIECE_BYTES,
  ProtocolError,
  decodeMessage,
  encodeMessage,
  messageFromFields,
  messageToFields,
  travelsUnordered,
} from "../../web/static/js/wire.js";

const messages = loadVector("messages.json").vectors;
const malformed = loadVector("malformed.json").vectors;
const chunkHeader = loadVector("chunk_header.json");

test("only pieces and requests travel unordered (the golden messages, as in Python)", () => {
  const kinds = new Set(messages.map((v) => v.fields.type));
  const unordered = new Set(
    messages.filter((v) => travelsUnordered(fromHex(v.hex))).map((v) => v.fields.type),
  );
  for (const kind of ["request", "piece", "have", "cancel", "hello"]) {
    assert.ok(kinds.has(kind), kind);
  }
  assert.deepEqual([...unordered].sort(), ["piece", "request"]);
  // A header stays in order ahead of the haves and pieces that need it.
  assert.equal(travelsUnordered(fromHex(chunkHeader.header_hex)), false);
});

for (const vector of messages) {
  test(`golden ${vector.fields.type} ${vector.hex.slice(0, 24)} decodes and re-encodes`, () => {
    const data = fromHex(vector.hex);
    const msg = decodeMessage(data);
    assert.deepEqual(messageToFields(msg), vector.fields);
    if (msg.type !== "unknown") {
      assert.equal(toHex(encodeMessage(messageFromFields(vector.fields))), vector.hex);
      assert.equal(toHex(encodeMessage(msg)), vector.hex);
    }
  });
}

test("golden chunk header decodes to its fields and re-encodes from fields", () => {
  const data = fromHex(chunkHeader.header_hex);
  const msg = decodeMessage(data);
  assert.deepEqual(messageToFields(msg), chunkHeader.header);
  assert.equal(toHex(encodeMessage(messageFromFields(chunkHeader.header))), chunkHeader.header_hex);
});

for (const vector of malformed) {
  test(`malformed rejected: ${vector.why}`, () => {
    let data = fromHex(vector.hex);
    if (vector.pad_zero_bytes) {
      const padded = new Uint8Array(data.length + vector.pad_zero_bytes);
      padded.set(data);
      data = padded;
    }
    assert.throws(() => decodeMessage(data), ProtocolError);
  });
}

test("decode accepts ArrayBuffer and offset views, refuses non-binary with ProtocolError", () => {
  const bytes = fromHex("00" + messages[0].hex);
  const view = bytes.subarray(1);
  assert.equal(decodeMessage(view).type, "hello");
  assert.equal(decodeMessage(view.slice().buffer).type, "hello");
  assert.throws(() => decodeMessage("hello"), ProtocolError);
  assert.throws(() => decodeMessage(null), ProtocolError);
});

test("random garbage only ever raises ProtocolError (fuzz, seeded)", () => {
  let state = 12345;
  const rand = () => {
    state = (state * 1103515245 + 12345) & 0x7fffffff;
    return state;
  };
  const seeds = messages.map((v) => fromHex(v.hex)).concat([fromHex(chunkHeader.header_hex)]);
  let rejected = 0;
  for (let i = 0; i < 5000; i++) {
    const base = seeds[rand() % seeds.length].slice();
    const data = base.subarray(0, rand() % (base.length + 1));
    for (let k = rand() % 4; k > 0 && data.length; k--) data[rand() % data.length] = rand() & 0xff;
    try {
      const msg = decodeMessage(data);
      if (msg.type !== "unknown") assert.equal(toHex(encodeMessage(msg)), toHex(data));
    } catch (err) {
      assert.ok(err instanceof ProtocolError, `unexpected ${err}`);
      rejected++;
    }
  }
  assert.ok(rejected > 100);
});

test("encode refuses what the wire cannot carry", () => {
  assert.throws(() => encodeMessage({ type: "have", seq: 1, pieces: [] }), RangeError);
  assert.throws(() => encodeMessage({ type: "request", seq: 2 ** 32, firstIndex: 0, count: 1 }), RangeError);
  assert.throws(() => encodeMessage({ type: "request", seq: 1, firstIndex: 1024, count: 1 }), RangeError);
  assert.throws(() => encodeMessage({ type: "cancel", seq: 1, firstIndex: 0, count: 0 }), RangeError);
  const big = new Uint8Array(MAX_PIECE_BYTES + 1);
  assert.throws(() => encodeMessage({ type: "piece", seq: 1, index: 0, count: 1, payload: big }), RangeError);
  const max = encodeMessage({ type: "piece", seq: 1, index: 0, count: 1, payload: big.subarray(1) });
  assert.equal(max.length, MAX_MESSAGE_BYTES);
  assert.throws(() => encodeMessage({ type: "bogus" }), RangeError);
});

test("bye text is cut to 255 bytes on a character boundary", () => {
  const out = encodeMessage({ type: "bye", reason: 0, text: "é".repeat(200) });
  const back = decodeMessage(out);
  assert.equal(back.text, "é".repeat(127));
  assert.equal(out[2], 254);
});
