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
