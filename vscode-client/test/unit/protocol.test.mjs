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
