// Playout over chunks of any length, in the JS core: the same scenarios as
// tests/test_playout_lengths.py (tests/scenarios/chunk_durations.json). A source core releases
// chunks as a live encoder would (each when its last frame is shot), a viewer core plays them:
// nothing that exists is skipped, nothing is played before it exists, no freeze is longer than a
// chunk (plus the input's own stall).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { ROOT, exchange } from "./helpers.mjs";
import { makeKeys, signChunk, syncVerifier } from "./swarmnet.mjs";
import { SwarmPeer, Role, seededRandom } from "../../web/static/js/swarm.js";

const { scenarios } = JSON.parse(
  readFileSync(join(ROOT, "tests", "scenarios", "chunk_durations.json"), "utf8"),
);
const keys = await makeKeys();
const CONFIG = { pieceSizeBytes: 1000, defaultChunkBytes: 4000, minInflightBytes: 4000 };

/** The chunks of a scenario, signed, each with its release time on the live clock. */
async function releases(durationsS, gapAfter) {
  const out = [];
  let mediaS = 0;
  let wallS = 0;
  for (const [seq, durationS] of durationsS.entries()) {
    wallS += durationS;
    const data = new Uint8Array(3000 + 1500 * Math.round(durationS)).fill(seq % 256);
    // The source signs at release, with its clock: the header carries the release time.
    const releaseS = Math.round(wallS * 100) / 100;
    const header = await signChunk(keys.privateKey, seq, data, {
      startS: mediaS,
      durationS,
      releaseS,
      pieceSize: CONFIG.pieceSizeBytes,
    });
    out.push({ seq, releaseS, durationS, header, data });
    mediaS += durationS;
    wallS += gapAfter[seq] ?? 0;
  }
  return out;
}

async function run(scenario) {
  const gapAfter = Object.fromEntries(
    Object.entries(scenario.gap_after ?? {}).map(([k, v]) => [Number(k), v]),
  );
  const chunks = await releases(scenario.durations_s, gapAfter);
  const endS = chunks.at(-1).releaseS + 15;
  const src = new SwarmPeer({ role: Role.SOURCE, now: 0, config: CONFIG });
  let viewer = null;
  const played = [];
  const missed = [];
  const pending = [...chunks];
  // Hundredths of a second as integers: the same instants as the Python test's 0.01 s steps.
  for (let tick = 0; tick / 100 <= endS; tick += 1) {
    const now = tick / 100;
    while (pending.length && pending[0].releaseS <= now) {
      const c = pending.shift();
      src.publishChunk(c.header, c.data, now);
    }
    if (viewer === null && now >= scenario.join_s) {
      viewer = new SwarmPeer({
        role: Role.VIEWER,
        now,
        config: CONFIG,
        rng: seededRandom(5),
        verifyHeaderSync: syncVerifier(keys.publicKeyRaw),
      });
      assert.ok(src.addNeighbour("v", now) && viewer.addNeighbour("src", now));
    }
    for (const core of [src, viewer]) {
      const t = core?.nextTimer();
      if (core && t !== null && t !== undefined && t <= now) core.handleTimer(now);
    }
    if (viewer !== null) {
      exchange(src, "src", viewer, "v", now, Infinity);
      for (const ev of viewer.popEvents()) {
        if (ev.kind === "ChunkPlayed") played.push([ev.seq, now]);
        else if (ev.kind === "ChunkMissed") missed.push(ev.seq);
      }
    }
  }
  return { played, missed, chunks, playback: viewer.playback };
}

for (const scenario of scenarios) {
  test(`chunks of any length all play, never before they exist: ${scenario.name}`, async () => {
    const { played, missed, chunks, playback } = await run(scenario);
    assert.deepEqual(missed, []);
    const seqs = played.map(([seq]) => seq);
    const first = seqs[0];
    assert.deepEqual(
      seqs,
      Array.from({ length: chunks.length - first }, (_, i) => first + i),
    );
    for (const [seq, atS] of played) {
      assert.ok(atS >= chunks[seq].releaseS, `chunk ${seq} played before it existed`);
    }
    for (let i = 1; i < played.length; i += 1) {
      const [a, atA] = played[i - 1];
      const [b, atB] = played[i];
      const allowedS =
        Math.max(chunks[a].durationS, chunks[b].releaseS - chunks[a].releaseS) + 0.05;
      assert.ok(atB - atA <= allowedS, `chunk ${b} came ${(atB - atA).toFixed(2)} s after ${a}`);
    }
    assert.equal(playback.continuity, 1);
    assert.equal(playback.missed + playback.late, 0);
  });
}

test("a long chunk re-anchors playout by its extra length only", async () => {
  const durations = [...Array(9).fill(1), 4, ...Array(9).fill(1)];
  const { missed, playback } = await run({ name: "long", durations_s: durations, join_s: 0 });
  assert.deepEqual(missed, []);
  assert.equal(playback.reanchors, 1);
  assert.ok(Math.abs(playback.reanchoredS - 3) <= 0.05, `${playback.reanchoredS}`);
});
