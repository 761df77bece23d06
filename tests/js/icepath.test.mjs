// The selected ICE candidate pair from getStats() reports as Chromium and Firefox shape them.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  formatPath,
  icePathFromStats,
  pairType,
  selectedCandidatePair,
} from "../../web/static/js/icepath.js";

const local = (id, candidateType, protocol = "udp") => ({ id, type: "local-candidate", candidateType, protocol });
const remote = (id, candidateType) => ({ id, type: "remote-candidate", candidateType, protocol: "udp" });
const pair = (id, l, r, extra = {}) => ({
  id,
  type: "candidate-pair",
  localCandidateId: l,
  remoteCandidateId: r,
  ...extra,
});
const report = (...stats) => new Map(stats.map((s) => [s.id, s]));

test("pair type: named after the more indirect end", () => {
  assert.equal(pairType("host", "host"), "host");
  assert.equal(pairType("host", "srflx"), "srflx");
  assert.equal(pairType("prflx", "host"), "prflx");
  assert.equal(pairType("srflx", "prflx"), "srflx");
  assert.equal(pairType("host", "relay"), "relay");
  assert.equal(pairType("relay", "srflx"), "relay");
});

test("Chromium: the transport names the selected pair", () => {
  const r = report(
    { id: "T01", type: "transport", selectedCandidatePairId: "CPb" },
    local("L1", "host"),
    local("L2", "relay"),
    remote("R1", "srflx"),
    pair("CPa", "L1", "R1", { state: "succeeded", nominated: true, currentRoundTripTime: 0.001 }),
    pair("CPb", "L2", "R1", { state: "succeeded", nominated: true, currentRoundTripTime: 0.0234 }),
  );
  assert.equal(selectedCandidatePair(r).id, "CPb");
  assert.deepEqual(icePathFromStats(r), {
    pair_type: "relay",
    local_candidate_type: "relay",
    remote_candidate_type: "srflx",
    protocol: "udp",
    rtt_ms: 23.4,
  });
});

test("Firefox: the pair flagged selected; else a nominated pair that succeeded", () => {
  const ff = report(
    local("L1", "host"),
    remote("R1", "host"),
    remote("R2", "prflx"),
    pair("P1", "L1", "R1", { state: "succeeded", nominated: true, selected: false }),
    pair("P2", "L1", "R2", { state: "succeeded", nominated: true, selected: true }),
  );
  assert.equal(icePathFromStats(ff).pair_type, "prflx");
  assert.equal(icePathFromStats(ff).rtt_ms, null); // no currentRoundTripTime yet
  const plain = report(
    local("L1", "host"),
    remote("R1", "host"),
    pair("P0", "L1", "R1", { state: "in-progress", nominated: false }),
    pair("P1", "L1", "R1", { state: "succeeded", nominated: true, currentRoundTripTime: 0.0004 }),
  );
  assert.equal(selectedCandidatePair(plain).id, "P1");
  assert.equal(icePathFromStats(plain).rtt_ms, 0.4);
});

test("no selected pair yet, or a dangling candidate id: null", () => {
  assert.equal(icePathFromStats(report()), null);
  assert.equal(icePathFromStats(null), null);
  assert.equal(
    icePathFromStats(report(pair("P", "L?", "R?", { state: "succeeded", nominated: true }))),
    null,
  );
  const waiting = report(local("L1", "host"), remote("R1", "host"), pair("P", "L1", "R1", { state: "waiting" }));
  assert.equal(icePathFromStats(waiting), null);
});

test("the neighbour table's text", () => {
  assert.equal(formatPath(null), "-");
  assert.equal(formatPath({ pair_type: "host", rtt_ms: null }), "host");
  assert.equal(formatPath({ pair_type: "relay", rtt_ms: 12.4 }), "relay · 12 ms");
});
