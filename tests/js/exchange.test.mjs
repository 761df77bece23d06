// Peer exchange in the page's pure parts: three JS cores passing hints and a relayed offer and
// answer (the wire rules themselves are in tests/conformance/scenarios/peer-exchange-*), and
// the driver's choice of links to open.
import { test } from "node:test";
import assert from "node:assert/strict";

import { SwarmPeer } from "../../web/static/js/swarm.js";
import { exchangeLinksToOpen } from "../../web/static/js/rtc.js";
import { Role } from "../../web/static/js/wire.js";

const CONFIG = { exchangeIntervalS: 1.0, exchangeFirstS: 0.5 };

function core(peerId) {
  // A relay needs no key to pass hints and signals (no chunk moves in this test).
  return new SwarmPeer({ role: Role.SOURCE, now: 0, config: CONFIG, peerId });
}

/** Deliver every control message queued at every core, until all are quiet. */
function deliver(cores, now) {
  for (let round = 0; round < 8; round++) {
    let moved = false;
    for (const [id, c] of Object.entries(cores)) {
      for (const to of c.takeReady()) {
        let msg;
        while ((msg = c.nextControlMessage(to)) !== null) {
          cores[to]?.receive(id, msg, now);
          moved = true;
        }
      }
    }
    if (!moved) return;
  }
}

test("a peer learns of its neighbour's neighbour and reaches it with a relayed offer", () => {
  // Source cores need no key (no chunk moves here) and say UPLOAD in their hellos; each is
  // then taken for a viewer, since the source is never named in hints.
  const cores = { a: core("a"), r: core("r"), b: core("b") };
  cores.a.addNeighbour("r", 0);
  cores.r.addNeighbour("a", 0);
  cores.r.addNeighbour("b", 0);
  cores.b.addNeighbour("r", 0);
  deliver(cores, 0.1);
  for (const c of Object.values(cores)) for (const nb of c.nbrs.values()) nb.role = Role.VIEWER;
  for (const c of Object.values(cores)) c.handleTimer(0.6);
  deliver(cores, 0.6);

  assert.deepEqual(cores.a.exchangeCandidates(4, 0.7), [["b", "r"]]);
  assert.deepEqual(cores.b.exchangeCandidates(4, 0.7), [["a", "r"]]);

  assert.equal(cores.a.sendSignal("r", "b", '{"kind":"offer","sdp":"x"}'), true);
  deliver(cores, 0.8);
  const atB = cores.b.popEvents().filter((e) => e.kind === "PeerSignal");
  assert.deepEqual(atB, [
    { kind: "PeerSignal", fromPeer: "a", via: "r", payload: '{"kind":"offer","sdp":"x"}' },
  ]);
  assert.equal(cores.b.sendSignal(atB[0].via, atB[0].fromPeer, '{"kind":"answer"}'), true);
  deliver(cores, 0.9);
  const atA = cores.a.popEvents().filter((e) => e.kind === "PeerSignal");
  assert.deepEqual(atA, [{ kind: "PeerSignal", fromPeer: "b", via: "r", payload: '{"kind":"answer"}' }]);
  assert.equal(cores.r.stats().signals_relayed, 2);
});

test("the page offers links to the best candidates it is not linked or linking to", () => {
  const candidates = [
    ["p", "r1"],
    ["me", "r1"],
    ["q", "r2"],
    ["s", "r1"],
    ["t", "r2"],
  ];
  const links = exchangeLinksToOpen(candidates, { ownId: "me", exclude: new Set(["q"]), room: 2 });
  assert.deepEqual(links, [
    ["p", "r1"],
    ["s", "r1"],
  ]);
  assert.deepEqual(exchangeLinksToOpen(candidates, { ownId: "me", exclude: new Set(), room: 0 }), []);
});
