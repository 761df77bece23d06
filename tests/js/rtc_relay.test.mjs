// The page's PeerManager with offers relayed by a neighbour (peer exchange): an offer that no
// neighbour can carry, or whose relaying neighbour goes before the answer, closes at once with
// relay_gone (the same rule as streamer.transport.rtc, tests/test_transport_rtc.py).
import { test } from "node:test";
import assert from "node:assert/strict";

import { PeerManager, RELAY_GONE } from "../../web/static/js/rtc.js";

/** Just enough of a browser's RTCPeerConnection for an offer that is never answered. */
class FakePeerConnection {
  constructor() {
    this.connectionState = "new";
    this.localDescription = null;
    this.closed = false;
  }
  createDataChannel(label) {
    return { label, bufferedAmount: 0, close() {} };
  }
  async createOffer() {
    return { type: "offer", sdp: "v=0 fake" };
  }
  async setLocalDescription(description) {
    this.localDescription = description;
  }
  close() {
    this.closed = true;
  }
}

function manager(relay) {
  globalThis.RTCPeerConnection = FakePeerConnection;
  const closed = new Map();
  const listener = {
    onPeerOpened() {},
    onPeerMessage() {},
    onPeerWritable() {},
    onPeerClosed(id, reason) {
      closed.set(id, reason);
    },
  };
  const signaling = { peerId: "alice", signal() {} };
  return { pm: new PeerManager(signaling, listener, { relay }), closed };
}

async function until(predicate) {
  for (let i = 0; i < 100 && !predicate(); i++) await new Promise((r) => setTimeout(r, 5));
  assert.ok(predicate(), "condition not reached");
}

test("an offer that no neighbour can carry closes at once", async () => {
  const refused = [];
  const { pm, closed } = manager((via, to, data) => {
    refused.push([via, to, data.kind]);
    return false;
  });
  try {
    assert.equal(pm.connect("bob", "carol"), true);
    await until(() => closed.has("bob"));
    assert.equal(closed.get("bob"), RELAY_GONE);
    assert.deepEqual(refused, [["carol", "bob", "offer"]]);
    assert.equal(pm.peers.has("bob"), false);
  } finally {
    pm.close();
  }
});

test("a pending offer closes when its relaying neighbour goes; others stay", async () => {
  const carried = [];
  const { pm, closed } = manager((via, to, data) => {
    carried.push([via, to, data.kind]);
    return true; // accepted, never answered: the neighbour is on its way out
  });
  try {
    assert.equal(pm.connect("carol"), true); // alice's own link to carol, through the server
    assert.equal(pm.connect("bob", "carol"), true);
    assert.equal(pm.connect("dave", "erin"), true);
    await until(() => carried.length === 2);
    pm.handlePeerLeft("carol"); // the server says carol is gone: her link closes...
    assert.equal(closed.get("carol"), "peer_left");
    assert.equal(closed.get("bob"), RELAY_GONE); // ...and the offer she was carrying
    assert.equal(closed.has("dave"), false, "an offer relayed by another neighbour stays");
    assert.ok(pm.peers.has("dave"));
  } finally {
    pm.close();
  }
});
