// Shared test helpers: paths, condition waits with deadlines, the bundled core.
import { createRequire } from "node:module";
import * as path from "node:path";
import { fileURLToPath } from "node:url";

export const VSC_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const REPO_ROOT = path.resolve(VSC_ROOT, "..");
export const PYTHON = process.env.ONTHEFLY_PYTHON || path.join(REPO_ROOT, ".venv/bin/python");

/** The plain-TypeScript core, bundled by `node scripts/build.mjs --tests`. */
export const core = createRequire(import.meta.url)(path.join(VSC_ROOT, "dist/test/core.cjs"));

/**
 * Polls `check` until it returns a truthy value (returned) or the deadline passes (throws with
 * `what` and the last value seen). Synchronisation by condition, never by a fixed sleep.
 */
export async function waitFor(check, { timeout = 30_000, interval = 50, what = "condition" } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      last = await check();
      if (last) return last;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeout} ms waiting for ${what}; last: ${last instanceof Error ? last.message : JSON.stringify(last)}`);
    }
    await new Promise((r) => setTimeout(r, interval));
  }
}
