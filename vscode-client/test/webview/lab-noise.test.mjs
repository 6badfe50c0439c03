// The Lab panel on the lab's label-noise control (digits-noise: 30% of classes 3/5/8/9 relabelled within
// that set, in train only), fed by a real trainer: the region the lab flags as mislabelled is marked in
// the page, visibly, "likely label noise — do not upweight", in the table and in its drill-down.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { core, VSC_ROOT, waitFor } from "../helpers/util.mjs";
import { startTrainer } from "../helpers/trainer.mjs";
import { launchBrowser } from "../helpers/browser.mjs";
import { openDashboard } from "../helpers/webview-harness.mjs";

const OUT = path.join(VSC_ROOT, "test-results");
const STEPS = 300;
const LONG = 240_000;
let trainer, session, browser, dash, page;

/** The Lab panel in full, from the whole page (an element screenshot would sit under the sticky header). */
async function shot(file) {
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: file, fullPage: true, clip: await page.locator("#lab-panel").boundingBox() });
}

before(async () => {
  fs.mkdirSync(OUT, { recursive: true });
  [trainer, browser] = await Promise.all([
    startTrainer({ FIXTURE_BENCH: "digits-noise", FIXTURE_RUN_NAME: "lab-noise" }, { script: "lab_trainer.py" }), launchBrowser()]);
  session = new core.RunSession(core.sessionTarget(trainer.info), { statusIntervalMs: 500 });
  session.start();
  dash = await openDashboard(browser, session, { theme: "light", viewport: { width: 1400, height: 1000 } });
  page = dash.page;
  const { outcome } = await session.command("step", STEPS);
  assert.equal(outcome.status, "applied", outcome.detail);
  await waitFor(async () => Number((await session.client.status()).step) === STEPS, { what: `${STEPS} steps`, timeout: LONG });
});

after(async () => {
  if (trainer) fs.writeFileSync(path.join(OUT, "lab-noise-trainer.log"), trainer.output());
  await dash?.close();
  await browser?.close();
  await session?.dispose();
  await trainer?.stop();
});

test("a region the lab finds mislabelled is flagged in the page: likely label noise — do not upweight", async () => {
  const receipts = page.locator('#lab-receipts li[data-kind="score"]');
  await page.click("#lab-score");
  await waitFor(async () => (await receipts.count()) === 1, { what: "the score receipt", timeout: LONG });
  await waitFor(async () => (await page.locator("#lab-panel").getAttribute("aria-busy")) === "false", { what: "the overview" });
  await page.click("#lab-discover");
  await waitFor(async () => (await page.locator("#lab-regions tbody tr").count()) > 0, { what: "the regions table", timeout: LONG });
  const noisy = page.locator("#lab-regions tbody tr.noise");
  const rows = await page.locator("#lab-regions tbody tr").allTextContents();
  assert.ok((await noisy.count()) >= 1, `a region flagged as label noise among: ${rows.join(" || ")}`);
  assert.equal(await noisy.first().locator("td.verdict").textContent(), "⚠ likely label noise — do not upweight");
  // Drawn in the error colour, not only worded.
  const [cell, plain] = await Promise.all([noisy.first().locator("td.verdict").evaluate((e) => getComputedStyle(e).color),
    page.locator("#lab-regions th").first().evaluate((e) => getComputedStyle(e).color)]);
  assert.notEqual(cell, plain);
  await noisy.first().locator("button").click();
  await waitFor(async () => (await page.locator("#lab-region-verdict").textContent()) === "Likely label noise — do not upweight.",
    { what: "the region's verdict in its drill-down" });
  await shot(path.join(OUT, "webview-lab-light-noise.png"));
});
