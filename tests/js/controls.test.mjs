// The player controls' pure rules: words for every page state, when "go to live" is offered.
import { test } from "node:test";
import assert from "node:assert/strict";

import { BEHIND_LIVE_S, STATE_WORDS, isBehindLive } from "../../web/static/js/controls.js";
import { STATES } from "../../web/static/js/ui.js";

test("every page state has words in the control bar", () => {
  for (const state of Object.keys(STATES)) {
    assert.ok(STATE_WORDS[state], `no words for ${state}`);
  }
  assert.equal(STATE_WORDS.waiting, "Offline");
  assert.equal(STATE_WORDS.reconnecting, "Reconnecting");
});

test("go to live is offered when paused by the viewer or far behind the newest media", () => {
  assert.equal(isBehindLive(null, false), false);
  assert.equal(isBehindLive({ state: "live", buffer_s: 1.5 }, false), false);
  assert.equal(isBehindLive({ state: "live", buffer_s: BEHIND_LIVE_S + 0.1 }, false), true);
  assert.equal(isBehindLive({ state: "live", buffer_s: 0.5 }, true), true);
  // Following the swarm core's lag, more buffered than BEHIND_LIVE_S is live all the same;
  // behind is behind the core's lag.
  const following = { state: "live", buffer_s: BEHIND_LIVE_S + 1, behind_core_s: 0.1 };
  assert.equal(isBehindLive(following, false), false);
  assert.equal(isBehindLive({ ...following, behind_core_s: BEHIND_LIVE_S + 0.1 }, false), true);
  // Nothing to go back to once the broadcast is over.
  assert.equal(isBehindLive({ state: "ended", buffer_s: 9 }, true), false);
});
