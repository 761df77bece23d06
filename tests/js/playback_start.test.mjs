// When playout begins: tests/scenarios/playback_start.json, which the Python playback runs too
// (tests/test_playback_start.py).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { ROOT } from "./helpers.mjs";
import { Playback } from "../../web/static/js/playback.js";

const { config, scenarios } = JSON.parse(
  readFileSync(join(ROOT, "tests", "scenarios", "playback_start.json"), "utf8"),
);

const close = (actual, expected, what) =>
  assert.ok(Math.abs(actual - expected) < 1e-9, `${what}: ${actual} != ${expected}`);

for (const sc of scenarios) {
  test(`playout begins as the shared scenario says: ${sc.name}`, () => {
    const pb = new Playback({
      chunkDurationS: 1,
      startBehindChunks: 0,
      joinedS: 0,
      targetLagS: config.target_lag_s,
      startMarginS: config.start_margin_s,
      startSoonerMinLagS: config.start_sooner_min_lag_s,
    });
    pb.hearOf(3);
    assert.equal(pb.startIfReady(sc.complete_s, true, 3, sc.release_s), true);
    if (sc.next_complete_s !== null) pb.startSooner(Math.max(sc.complete_s, sc.next_complete_s));
    close(pb.playStartS, sc.play_start_s, "play start");
    close(pb.startupS, sc.play_start_s, "startup");
    close(pb.startLagS, sc.play_start_s - sc.release_s, "start lag");
  });
}
