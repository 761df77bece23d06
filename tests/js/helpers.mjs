// Shared helpers of the JS tests: load the golden vectors, hex, the vectors' test chunk.
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";

export const HERE = dirname(fileURLToPath(import.meta.url));
export const ROOT = join(HERE, "..", "..");
export const JS = join(ROOT, "web", "static", "js");

export function loadVector(name) {
  return JSON.parse(readFileSync(join(ROOT, "tests", "vectors", name), "utf8"));
}

export { fromHex, toHex } from "../../web/static/js/wire.js";

/** Deliver everything two cores have for each other (control and data), instantly: at most
 * `rounds` rounds of replies. */
export function exchange(a, aId, b, bId, now, rounds = 20) {
  for (let r = 0; r < rounds; r++) {
    let moved = false;
    for (const [x, xId, y, yId] of [
      [a, aId, b, bId],
      [b, bId, a, aId],
    ]) {
      let m;
      while ((m = x.nextControlMessage(yId)) !== null) {
        y.receive(xId, m, now);
        moved = true;
      }
      while ((m = x.nextDataMessage(yId, now)) !== null) {
        y.receive(xId, m, now);
        moved = true;
      }
    }
    if (!moved) return;
  }
}
