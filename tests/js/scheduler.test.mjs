// planPieces, the pure piece scheduler: mirrors the scheduler tests of tests/test_swarm.py.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  ALL_HELD,
  hasBit,
  lowestBit,
  maskOf,
  planPieces,
  seededRandom,
} from "../../web/static/js/scheduler.js";

const holder = (peerId, knownMask, { earlier = false, source = false } = {}) => ({
  peerId,
  knownMask,
  earlier,
  source,
});
const want = (seq, deadlineS, missing, needHeader, holders) => ({
  seq,
  deadlineS,
  missing,
  needHeader,
  holders,
});
const ask = (seq, peerId, pieces, wantHeader) => ({ seq, peerId, pieces, wantHeader });
const room = (entries) => new Map(Object.entries(entries));

test("planPieces: urgent first (by deadline), then rarest first", () => {
  const wants = [
    want(10, 5.0, [0], false, [holder("a", ALL_HELD), holder("b", ALL_HELD), holder("c", ALL_HELD)]),
    want(11, 6.0, [0], false, [holder("a", ALL_HELD)]),
    want(9, 1.2, [0], false, [holder("b", ALL_HELD), holder("c", ALL_HELD)]),
    want(8, 1.0, [0], false, [holder("c", ALL_HELD)]),
  ];
  const asks = planPieces(wants, room({ a: 5, b: 5, c: 5 }), 0, 1.5, seededRandom(1));
  assert.deepEqual(
    asks.map((a) => a.seq),
    [8, 9, 11, 10],
  );
  assert.deepEqual(asks[0], ask(8, "c", [0], false));
  assert.equal(asks.find((a) => a.seq === 11).peerId, "a");
});

test("planPieces: splits a chunk over the holders of each piece, never one piece twice", () => {
  // a holds pieces 0 and 1, b holds 2 and 3 (their haves); nobody holds piece 4 yet.
  const holders = [holder("a", 0b0011n), holder("b", 0b1100n)];
  let asks = planPieces(
    [want(5, 9.0, [0, 1, 2, 3, 4], false, holders)],
    room({ a: 9, b: 9 }),
    0,
    1.5,
    seededRandom(2),
  );
  assert.deepEqual(
    asks.map((a) => [a.peerId, a.pieces]).sort(),
    [
      ["a", [0, 1]],
      ["b", [2, 3]],
    ],
  );
  // With room for one piece each, the whole-chunk holder c takes what is left.
  const holders3 = [holder("a", 0b0011n), holder("b", 0b1100n), holder("c", ALL_HELD)];
  const left = room({ a: 1, b: 1, c: 1 });
  asks = planPieces(
    [want(5, 9.0, [0, 1, 2, 3, 4], false, holders3)],
    left,
    0,
    1.5,
    seededRandom(2),
  );
  const pieces = asks.flatMap((a) => a.pieces);
  assert.equal(pieces.length, 3);
  assert.equal(new Set(pieces).size, 3, "never one piece from two holders");
  assert.deepEqual([...left.values()], [0, 0, 0], "room is consumed, one per piece");
});

test("planPieces: peers before the source; the source only when urgent or no peer is linked", () => {
  const rng = seededRandom(2);
  const srcAll = holder("src", ALL_HELD, { source: true });
  const later = want(20, 9.0, [0], false, [holder("p", ALL_HELD), srcAll]);
  assert.deepEqual(planPieces([later], room({ p: 1, src: 9 }), 0, 1.5, rng), [
    ask(20, "p", [0], false),
  ]);
  // A peer with no room: a non-urgent piece waits for it, an urgent one goes to the source.
  assert.deepEqual(planPieces([later], room({ p: 0, src: 9 }), 0, 1.5, rng), []);
  const urgent = want(21, 1.0, [0], false, [holder("p", ALL_HELD), srcAll]);
  assert.deepEqual(planPieces([urgent], room({ p: 0, src: 9 }), 0, 1.5, rng), [
    ask(21, "src", [0], false),
  ]);
  // Nobody else holds it: with a peer linked (busy, or holding nothing yet) the source keeps its
  // copy budget for urgent requests; a viewer linked to the source alone asks it anyway.
  const onlySource = want(22, 9.0, [0], false, [srcAll]);
  assert.deepEqual(planPieces([onlySource], room({ src: 9, p: 0 }), 0, 1.5, rng), []);
  assert.deepEqual(planPieces([onlySource], room({ src: 9 }), 0, 1.5, rng, false), [
    ask(22, "src", [0], false),
  ]);
  // Super-seeding: the source advertised piece 3 to us alone; we fetch it (and the header) there.
  const seeded = want(23, 9.0, [], true, [holder("src", 0b1000n, { source: true })]);
  assert.deepEqual(planPieces([seeded], room({ src: 9 }), 0, 1.5, rng), [
    ask(23, "src", [3], true),
  ]);
  // A source that advertised piece 3 only is never asked for piece 0.
  const notThat = want(24, 1.0, [0], false, [holder("src", 0b1000n, { source: true })]);
  assert.deepEqual(planPieces([notThat], room({ src: 9 }), 0, 1.5, rng), []);
});

test("planPieces: an earlier receiver is asked only for urgent chunks", () => {
  const rng = seededRandom(4);
  const receiving = holder("p", 0n, { earlier: true });
  const calm = want(30, 9.0, [0, 1], false, [receiving]);
  assert.deepEqual(planPieces([calm], room({ p: 9 }), 0, 1.5, rng), []);
  const urgent = want(31, 1.0, [0, 1], false, [receiving]);
  assert.deepEqual(planPieces([urgent], room({ p: 9 }), 0, 1.5, rng), [
    ask(31, "p", [0, 1], false),
  ]);
  // A holder known to have the piece beats an earlier receiver (tier 1 before tier 2).
  const both = want(32, 1.0, [0], false, [receiving, holder("q", 0b1n)]);
  assert.deepEqual(planPieces([both], room({ p: 9, q: 1 }), 0, 1.5, rng), [
    ask(32, "q", [0], false),
  ]);
});

test("planPieces: room limits the pieces asked of each neighbour; ties go to the most room", () => {
  const wants = [0, 1, 2, 3].map((s) =>
    want(s, 9.0 + s, [0, 1, 2], false, [holder("a", ALL_HELD), holder("b", ALL_HELD)]),
  );
  const asks = planPieces(wants, room({ a: 2, b: 2 }), 0, 1.5, seededRandom(3));
  const count = (pid) =>
    asks.filter((a) => pid === null || a.peerId === pid).reduce((n, a) => n + a.pieces.length, 0);
  assert.equal(count(null), 4);
  assert.equal(count("a"), 2);
  const roomy = planPieces(
    [want(7, 9.0, [0], false, [holder("a", ALL_HELD), holder("b", ALL_HELD)])],
    room({ a: 1, b: 3 }),
    0,
    1.5,
    seededRandom(3),
  );
  assert.deepEqual(roomy, [ask(7, "b", [0], false)]);
});

test("planPieces: a chunk without its header: one holder, header plus its first known piece", () => {
  const asks = planPieces(
    [want(40, 9.0, [], true, [holder("a", 0b0100n), holder("b", 0b0100n)])],
    room({ a: 2, b: 2 }),
    0,
    1.5,
    seededRandom(5),
  );
  assert.equal(asks.length, 1);
  assert.deepEqual(asks[0].pieces, [2]);
  assert.equal(asks[0].wantHeader, true);
});

test("bit masks: BigInt, -1n holds every piece, up to 1024 pieces", () => {
  assert.equal(hasBit(ALL_HELD, 1023), true);
  assert.equal(hasBit(0n, 0), false);
  const bits = new Array(1024).fill(false);
  bits[1000] = true;
  const mask = maskOf(bits);
  assert.equal(hasBit(mask, 1000), true);
  assert.equal(hasBit(mask, 999), false);
  assert.equal(lowestBit(mask), 1000);
  assert.equal(lowestBit(ALL_HELD), 0);
  assert.equal(lowestBit(0n), 0);
  assert.equal(hasBit(5, 2), true, "a Number mask is accepted too");
});

test("planPieces: the source's first copy (advertised to us alone) is asked even without room", () => {
  const seeded = want(40, 9.0, [2], false, [holder("src", 0b100n, { source: true })]);
  assert.deepEqual(planPieces([seeded], room({ src: 0 }), 0, 1.5, seededRandom(1)), [
    ask(40, "src", [2], false),
  ]);
  // A whole-chunk fallback from the source still respects room.
  const fallback = want(41, 1.0, [0], false, [holder("src", ALL_HELD, { source: true })]);
  assert.deepEqual(planPieces([fallback], room({ src: 0 }), 0, 1.5, seededRandom(1)), []);
  // So does a peer holding the piece.
  const peer = want(42, 9.0, [2], false, [holder("p", 0b100n)]);
  assert.deepEqual(planPieces([peer], room({ p: 0 }), 0, 1.5, seededRandom(1)), []);
});

test("planPieces: with a peer linked, the source waits for urgency, piece by piece", () => {
  const srcAll = holder("src", ALL_HELD, { source: true });
  // Not urgent: p holds piece 0 only (its have); nobody but the source holds pieces 1 and 2.
  const split = want(50, 9.0, [0, 1, 2], false, [holder("p", 0b001n), srcAll]);
  assert.deepEqual(planPieces([split], room({ p: 9, src: 9 }), 0, 1.5, seededRandom(1)), [
    ask(50, "p", [0], false),
  ]);
  // Urgent: pieces 1 and 2 go to the source; so does 0 when p has no room.
  const due = want(50, 1.0, [0, 1, 2], false, [holder("p", 0b001n), srcAll]);
  assert.deepEqual(planPieces([due], room({ p: 9, src: 9 }), 0, 1.5, seededRandom(1)), [
    ask(50, "p", [0], false),
    ask(50, "src", [1, 2], false),
  ]);
  assert.deepEqual(planPieces([due], room({ p: 0, src: 9 }), 0, 1.5, seededRandom(1)), [
    ask(50, "src", [0, 1, 2], false),
  ]);
  // Linked to the source alone: everything goes to it, urgent or not.
  const alone = want(51, 9.0, [0, 1], false, [srcAll]);
  assert.deepEqual(planPieces([alone], room({ src: 9 }), 0, 1.5, seededRandom(1), false), [
    ask(51, "src", [0, 1], false),
  ]);
  // The header: a non-urgent one waits for a peer with room.
  const header = want(52, 9.0, [], true, [holder("p", 0b100n), srcAll]);
  assert.deepEqual(planPieces([header], room({ p: 9, src: 9 }), 0, 1.5, seededRandom(1)), [
    ask(52, "p", [2], true),
  ]);
  const headerBusy = planPieces([header], room({ p: 0, src: 9 }), 0, 1.5, seededRandom(1));
  assert.deepEqual(headerBusy, [], "the peer is full: a non-urgent header waits for it");
});

test("planPieces: a stuck piece moves to another holder, never back to its own", () => {
  const w = {
    ...want(7, 9.0, [0, 1, 2], false, [holder("a", ALL_HELD), holder("b", ALL_HELD)]),
    stuck: [
      [0, "a"],
      [1, "a"],
    ],
  };
  for (let seed = 0; seed < 8; seed++) {
    const asks = planPieces([w], room({ a: 9, b: 9 }), 0, 1.5, seededRandom(seed));
    const byPeer = Object.fromEntries(asks.map((a) => [a.peerId, a.pieces]));
    assert.ok(byPeer.b.includes(0) && byPeer.b.includes(1));
    assert.ok((byPeer.a ?? []).every((i) => i === 2));
  }
  // With no other holder with room, a stuck piece stays where it is (not asked again).
  const asks = planPieces([w], room({ a: 9, b: 0 }), 0, 1.5, seededRandom(1));
  assert.deepEqual(asks, [ask(7, "a", [2], false)]);
});
