// The compare page: two real trainers' loss histories overlaid, one line per run, in Chromium; a run
// that cannot be read is named with the reason instead of failing the page.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { core, VSC_ROOT, waitFor } from "../helpers/util.mjs";
import { startTrainer } from "../helpers/trainer.mjs";
import { launchBrowser } from "../helpers/browser.mjs";
import { openDashboard } from "../helpers/webview-harness.mjs";

const OUT = path.join(VSC_ROOT, "test-results");
let a, b, browser, dash;

before(async () => {
  fs.mkdirSync(OUT, { recursive: true });
  [a, browser] = await Promise.all([startTrainer({ FIXTURE_HIDDEN: "16" }), launchBrowser()]);
  b = await startTrainer({ FIXTURE_RUN_NAME: "wider", FIXTURE_HIDDEN: "64" }, { dir: a.dir });
  dash = await openDashboard(browser, undefined, { compare: true, theme: "dark" });
});

after(async () => {
  if (dash) fs.writeFileSync(path.join(OUT, "compare-page.log"), dash.problems.join("\n"));
  await dash?.close();
  await browser?.close();
  await b?.stop();
  await a?.stop();
});

test("two runs' loss on one chart, a line each; an unreachable run is named with the reason", async () => {
  const targets = [core.sessionTarget(a.info), core.sessionTarget(b.info)];
  const probe = new core.RunClient(b.info);
  try {
    await waitFor(async () => Number((await probe.status()).step) > 50, { what: "50 steps of the second run" });
  } finally {
    probe.close();
  }
  const gone = { ...targets[0], port: 1, label: "vscode-tests/gone", runId: "gone" };
  const view = await core.compareRuns([...targets, gone], ["loss"]);
  assert.ok(view.runs[0].series.loss.x.length > 10 && view.runs[1].series.loss.x.length > 10);
  assert.ok(view.runs[2].error, "the unreachable run says why");
  await dash.page.evaluate((v) => window.dispatchEvent(new MessageEvent("message", { data: { type: "compare", view: v } })), view);
  const chart = dash.page.locator('#compare-charts .chart[data-chart="loss"]');
  await chart.waitFor({ timeout: 15_000 });
  assert.equal(await chart.getAttribute("data-runs"), "2");
  const legend = await chart.locator(".u-legend").textContent();
  assert.ok(legend.includes("vscode-tests/fixture") && legend.includes("vscode-tests/wider"), legend);
  assert.match(await dash.page.locator("#compare-caption").textContent(), /not readable: vscode-tests\/gone \(.+\)/);
  assert.deepEqual(dash.problems, []);
  await dash.page.screenshot({ path: path.join(OUT, "webview-compare.png") });
});
