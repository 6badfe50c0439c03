import { test } from "node:test";
import assert from "node:assert/strict";
import { core } from "../helpers/util.mjs";

const { parseViewMessage, dashboardHtml, contentSecurityPolicy } = core;

test("parseViewMessage accepts well-formed messages only", () => {
  assert.deepEqual(parseViewMessage({ type: "ready", runId: "r", gen: 3, lastSeq: 10 }), { type: "ready", runId: "r", gen: 3, lastSeq: 10 });
  assert.deepEqual(parseViewMessage({ type: "ready" }), { type: "ready", runId: "", gen: -1, lastSeq: 0 });
  assert.deepEqual(parseViewMessage({ type: "command", id: 1, command: "pause" }), { type: "command", id: 1, command: "pause", value: undefined });
  assert.equal(parseViewMessage({ type: "command", id: 1, command: "rm -rf" }), undefined);
  assert.equal(parseViewMessage({ type: "command", id: 1, command: "setLr" }), undefined, "setLr needs a value");
  assert.equal(parseViewMessage({ type: "command", id: 1, command: "setLr", value: "0.1" }), undefined);
  assert.equal(parseViewMessage({ type: "exportPng", name: "x", dataUrl: "data:text/html,<b>" }), undefined);
  assert.equal(parseViewMessage({ type: "exportPng", name: "../../etc/x", dataUrl: "data:image/png;base64,AA==" }).name, ".._.._etc_x");
  assert.deepEqual(parseViewMessage({ type: "health", id: 2, checks: [] }), { type: "health", id: 2, checks: [] });
  assert.deepEqual(parseViewMessage({ type: "health", id: 2, checks: ["numerics", "gradients", "numerics"] }),
    { type: "health", id: 2, checks: ["numerics", "gradients"] }, "each check at most once");
  assert.equal(parseViewMessage({ type: "health", id: 2, checks: ["bogus"] }), undefined);
  assert.equal(parseViewMessage({ type: "health", id: 2 }), undefined);
  assert.deepEqual(parseViewMessage({ type: "command", id: 3, command: "exportSession" }), { type: "command", id: 3, command: "exportSession", value: undefined });
  assert.equal(parseViewMessage(null), undefined);
  assert.equal(parseViewMessage({ type: "eval" }), undefined);
  assert.deepEqual(parseViewMessage({ type: "zoom", id: 4, names: ["loss", "loss", "lr"], min: 10.5, max: 90, buckets: 1e9 }),
    { type: "zoom", id: 4, names: ["loss", "lr"], min: 10.5, max: 90, buckets: 100_000 }, "buckets capped, names once each");
  assert.equal(parseViewMessage({ type: "zoom", id: 4, names: ["loss"], min: 90, max: 10, buckets: 800 }), undefined, "min after max");
  assert.equal(parseViewMessage({ type: "zoom", id: 4, names: [3], min: 1, max: 10, buckets: 800 }), undefined);
  assert.deepEqual(parseViewMessage({ type: "attach", runId: "p/r/1" }), { type: "attach", runId: "p/r/1" });
  assert.deepEqual(parseViewMessage({ type: "attach" }), { type: "attach" });
  assert.equal(parseViewMessage({ type: "attach", runId: 7 }), undefined);
  assert.deepEqual(parseViewMessage({ type: "command", id: 5, command: "restoreCheckpoint", text: "step0000120-449cd1" }),
    { type: "command", id: 5, command: "restoreCheckpoint", value: undefined, text: "step0000120-449cd1" });
  assert.equal(parseViewMessage({ type: "command", id: 5, command: "restoreCheckpoint" }), undefined, "restore names its checkpoint");
  assert.deepEqual(parseViewMessage({ type: "listCheckpoints", id: 6 }), { type: "listCheckpoints", id: 6 });
});

test("the dashboard page has a strict CSP with a nonce on every script and stylesheet", () => {
  const html = dashboardHtml({ cspSource: "https://x.test", scriptUri: "https://x.test/w.js", styleUri: "https://x.test/w.css", nonce: "abc123" });
  const csp = contentSecurityPolicy("https://x.test", "abc123");
  assert.match(csp, /default-src 'none'/);
  assert.match(csp, /script-src 'nonce-abc123'/);
  assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
  const scripts = html.match(/<script[^>]*>/g);
  assert.ok(scripts.every((s) => s.includes('nonce="abc123"')));
  assert.doesNotMatch(html, /\son\w+=/, "no inline event handlers");
  assert.doesNotMatch(html, /style="/, "no inline styles");
});

test("lab requests from the page: only well-formed ones reach the trainer", () => {
  const lab = (request) => parseViewMessage({ type: "lab", id: 1, request });
  assert.deepEqual(lab({ op: "score", extra: 5 }), { type: "lab", id: 1, request: { op: "score" } });
  assert.deepEqual(lab({ op: "discover", k: 8 }).request, { op: "discover", k: 8 });
  assert.deepEqual(lab({ op: "region", regionId: "r1" }).request, { op: "region", regionId: "r1" });
  assert.deepEqual(lab({ op: "export", regionId: "r1", format: "csv" }).request, { op: "export", regionId: "r1", format: "csv" });
  // A budget of 0 goes through: the trainer answers why it refuses, and the page shows that.
  assert.deepEqual(lab({ op: "fork", regionId: "r1", budget: 0 }).request, { op: "fork", regionId: "r1", budget: 0 });
  assert.deepEqual(lab({ op: "compare", extra: 200, resolutions: ["continue", "fork-route"] }).request,
    { op: "compare", extra: 200, resolutions: ["continue", "fork-route"] });
  assert.deepEqual(lab({ op: "apply", resolution: "fork-route" }).request, { op: "apply", resolution: "fork-route" });
  for (const bad of [{ op: "rm" }, { op: "discover", k: 1.5 }, { op: "region" }, { op: "region", regionId: "../../etc" },
    { op: "export", regionId: "r1", format: "pickle" }, { op: "export", regionId: "r1" }, { op: "fork", regionId: "r1", budget: "9" },
    { op: "sample", index: "3" }, { op: "compare", resolutions: "all" }, { op: "apply" }]) {
    assert.equal(lab(bad), undefined, JSON.stringify(bad));
  }
  assert.equal(parseViewMessage({ type: "lab", request: { op: "score" } }), undefined);
});

test("thumbnail: image-shaped inputs become min-max scaled pixels; other shapes none", () => {
  const chw = core.thumbnail([1, 2, 2], [0, 1, 2, 4]);
  assert.deepEqual(chw, { width: 2, height: 2, channels: 1, pixels: [0, 0.25, 0.5, 1] });
  const hwc = core.thumbnail([2, 1, 3], [0, 0, 0, 10, 10, 10]);
  assert.deepEqual(hwc, { width: 1, height: 2, channels: 3, pixels: [0, 0, 0, 1, 1, 1] });
  assert.equal(core.thumbnail([64], new Array(64).fill(0)), undefined);
});
