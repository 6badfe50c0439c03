// The Lab panel follows the lab by itself: another client (as the CLI would) scores the run, finds
// regions and forks one, and the page in headless Chromium shows each without a click: the scoring
// pass and the fork from the stream's command events, the regions from the panel's bounded poll.
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
let trainer, session, other, browser, dash, page;

const labOps = () => dash.toHost.filter((m) => m.type === "lab").map((m) => m.request.op);
const count = (op) => labOps().filter((o) => o === op).length;

before(async () => {
  fs.mkdirSync(OUT, { recursive: true });
  [trainer, browser] = await Promise.all([
    startTrainer({ FIXTURE_RUN_NAME: "lab-refresh" }, { script: "lab_trainer.py" }), launchBrowser()]);
  session = new core.RunSession(core.sessionTarget(trainer.info), { statusIntervalMs: 500 });
  session.start();
  dash = await openDashboard(browser, session, { theme: "dark", viewport: { width: 1400, height: 1000 } });
  page = dash.page;
  const { outcome } = await session.command("step", STEPS);
  assert.equal(outcome.status, "applied", outcome.detail);
  await waitFor(async () => Number((await session.client.status()).step) === STEPS, { what: `${STEPS} steps`, timeout: LONG });
  other = new core.RunClient(trainer.info); // another client of the same run, as `onthefly lab ...` is
});

after(async () => {
  if (trainer) fs.writeFileSync(path.join(OUT, "lab-refresh-trainer.log"), trainer.output());
  if (dash) fs.writeFileSync(path.join(OUT, "lab-refresh-page.log"), dash.problems.join("\n"));
  other?.close();
  await dash?.close();
  await browser?.close();
  await session?.dispose();
  await trainer?.stop();
});

test("a scoring pass, regions and a fork made by another client show in the Lab panel without a click", async () => {
  const panel = page.locator("#lab-panel");
  await page.locator("#lab-panel").scrollIntoViewIfNeeded();
  await waitFor(async () => count("overview") >= 1 && (await panel.getAttribute("aria-busy")) === "false", { what: "the panel's first overview" });

  const before = count("overview");
  const scored = await other.lab.score({}, { timeoutMs: LONG });
  assert.equal(scored.receipt.status, core.receiptPb.ReceiptStatus.APPLIED, scored.receipt.reason);
  const step = Number(scored.receipt.appliedStep);
  await waitFor(async () => (await panel.getAttribute("data-auto-refresh"))?.startsWith(`lab-score applied at step ${step}`),
    { what: "the panel to take in the scoring pass from the stream", timeout: 60_000 });
  await waitFor(() => count("overview") > before, { what: "an overview request the page made by itself after the scoring pass" });

  const found = (await other.lab.discoverRegions({ k: 8 }, { timeoutMs: LONG })).discovery;
  assert.ok(found.regions.length > 0);
  await waitFor(async () => (await page.locator("#lab-regions tbody tr").count()) === found.regions.length,
    { what: `the ${found.regions.length} regions another client found, in the page (the panel's poll)`, timeout: 60_000 });

  const forked = await other.resolutions.fork({ regionIds: [found.regions[0].regionId], budget: 200n }, { timeoutMs: LONG });
  assert.equal(forked.specialistIds.length, 1);
  await waitFor(async () => (await page.locator(`#lab-lineage g.node[data-id="${forked.specialistIds[0]}"]`).count()) === 1,
    { what: `the specialist ${forked.specialistIds[0]} in the lineage graph (from the fork's command event)`, timeout: 60_000 });

  // The page only read: it scored, discovered and forked nothing itself, said nothing alarming, and the run
  // stayed where it was.
  assert.deepEqual([...new Set(labOps())].sort(), ["lineage", "overview"]);
  assert.notEqual(await page.locator("#lab-status").getAttribute("data-error"), "true");
  const st = await session.client.status();
  assert.equal(Number(st.step), STEPS);
  assert.equal(st.state, core.runPb.RunState.PAUSED);
  assert.deepEqual(dash.problems, []);
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: path.join(OUT, "webview-lab-refreshed.png"), fullPage: true, clip: await panel.boundingBox() });
});
