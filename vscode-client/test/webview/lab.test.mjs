// The Lab panel in headless Chromium, fed by a real trainer on the lab's digits-shift benchmark (a real
// error region) through a real RunSession: score with its receipt, the trainer's loss histogram with
// quantile bands, regions with verdicts, the drill-down (region → example → trajectory and thumbnail),
// slice export to the file the host picked, fork / compare / recommend / apply with receipts and the
// lineage graph; bad input (unknown region, budget 0) gives a clear message and leaves the run as it was.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { core, VSC_ROOT, waitFor } from "../helpers/util.mjs";
import { startTrainer } from "../helpers/trainer.mjs";
import { launchBrowser } from "../helpers/browser.mjs";
import { openDashboard } from "../helpers/webview-harness.mjs";

const OUT = path.join(VSC_ROOT, "test-results");
const files = fs.mkdtempSync(path.join(os.tmpdir(), "otf-lab-"));
const STEPS = 300;
const LONG = 240_000;
let trainer, session, browser, dash, page;
/** What the host's save dialog answers next (undefined = the person cancelled). */
let saveAnswer;

const status = () => session.client.status();
const labStatus = () => page.locator("#lab-status").textContent();
async function labReceipt(kind, act) {
  const rows = page.locator(`#lab-receipts li[data-kind="${kind}"]`);
  const n = await rows.count();
  await act();
  await waitFor(async () => (await rows.count()) > n, { what: `a new "${kind}" receipt in the Lab panel`, timeout: LONG });
  return rows.first().textContent();
}
async function idle() {
  await waitFor(async () => (await page.locator("#lab-panel").getAttribute("aria-busy")) === "false",
    { what: "the Lab panel's requests to be answered", timeout: LONG });
}
/** The run is paused at the step it was left at: nothing the panel did trained or moved it. */
async function untouched() {
  const s = await status();
  assert.equal(Number(s.step), STEPS);
  assert.equal(s.state, core.runPb.RunState.PAUSED);
}

/** The Lab panel in full, from the whole page (an element screenshot would sit under the sticky header). */
async function shot(file) {
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: file, fullPage: true, clip: await page.locator("#lab-panel").boundingBox() });
}

before(async () => {
  fs.mkdirSync(OUT, { recursive: true });
  [trainer, browser] = await Promise.all([startTrainer({}, { script: "lab_trainer.py" }), launchBrowser()]);
  session = new core.RunSession(core.sessionTarget(trainer.info), {
    statusIntervalMs: 500,
    saveSlice: async (name, format, data) => {
      if (!saveAnswer) return undefined;
      const file = path.join(files, saveAnswer);
      fs.writeFileSync(file, data);
      return file;
    },
  });
  session.start();
  dash = await openDashboard(browser, session, { theme: "dark", viewport: { width: 1400, height: 1000 } });
  page = dash.page;
  const { outcome } = await session.command("step", STEPS);
  assert.equal(outcome.status, "applied", outcome.detail);
  await waitFor(async () => Number((await status()).step) === STEPS && (await status()).state === core.runPb.RunState.PAUSED,
    { what: `${STEPS} steps, paused`, timeout: LONG });
});

after(async () => {
  if (trainer) fs.writeFileSync(path.join(OUT, "lab-trainer.log"), trainer.output());
  if (dash) fs.writeFileSync(path.join(OUT, "lab-page.log"), dash.problems.join("\n"));
  await dash?.close();
  await browser?.close();
  await session?.dispose();
  await trainer?.stop();
  fs.rmSync(files, { recursive: true, force: true });
});

test("score now: its receipt; the trainer's histogram of every sample's latest loss with quantile bands; find regions", async () => {
  const text = await labReceipt("score", () => page.click("#lab-score"));
  const m = text.match(/^score: applied at step (\d+): train (\d+) samples, accuracy [\d.]+ %, mean loss \S+ \(\d+\.\d+ s\)$/);
  assert.ok(m, `the score receipt: ${text}`);
  assert.equal(Number(m[1]), STEPS);
  const samples = Number(m[2]);
  // The histogram comes from the trainer's bins (one latest loss per sample), drawn with its bands.
  await waitFor(async () => Number(await page.locator("#lab-hist").getAttribute("data-total")) === samples,
    { what: `the Lab histogram over ${samples} samples` });
  assert.ok(Number(await page.locator("#lab-hist").getAttribute("data-bars")) > 3);
  assert.match(await page.locator("#lab-hist-caption").textContent(), new RegExp(`^${samples} samples · median \\S+ · 25–75 % `));
  assert.match(await page.locator("#lab-hist").getAttribute("aria-label"), /5–95 %/);
  // The page never received per-sample losses: only bins and quantiles.
  const sent = await page.evaluate(() => window.__otfReceived.filter((m) => m.type === "labDone").length);
  assert.ok(sent >= 2);

  await page.fill("#lab-k", "8");
  await page.click("#lab-discover");
  await waitFor(async () => (await page.locator("#lab-regions tbody tr").count()) > 0, { what: "the regions table", timeout: LONG });
  await idle();
  const first = page.locator("#lab-regions tbody tr").first();
  assert.equal(await first.getAttribute("data-region"), "r1");
  const cells = await first.locator("td").allTextContents();
  assert.ok(Number(cells[1]) > 0 && /×$/.test(cells[3]), `r1's row: ${cells.join(" | ")}`);
  assert.ok(cells[5].length > 0 && cells[6].length > 20, `r1 has a verdict and a description: ${cells.join(" | ")}`);
  assert.equal(await page.locator("#lab-regions-empty").isHidden(), true);
  await untouched();
});

test("drill-down: region → its description and examples → a sample's loss trajectory and its 8×8 thumbnail", async () => {
  await page.click('#lab-regions tbody tr[data-region="r1"] button');
  await page.locator("#lab-region:not([hidden])").waitFor({ timeout: 30_000 });
  assert.equal(await page.locator("#lab-region-title").textContent(), "Region r1");
  const kv = await page.locator("#lab-region-kv").textContent();
  assert.match(kv, /accuracy in \/ out/);
  assert.match(kv, /classes\d/);
  const examples = page.locator("#lab-examples button.sample");
  assert.ok((await examples.count()) > 0, "the region lists example samples");
  const index = Number(await examples.first().getAttribute("data-index"));
  await examples.first().click();
  await waitFor(async () => (await page.locator("#lab-sample-title").textContent()).startsWith(`Sample ${index} · label `),
    { what: `sample ${index}'s drill-down` });
  // The sample was seen in training (every epoch) and in the scoring pass: a real trajectory.
  assert.ok(Number(await page.locator("#lab-traj").getAttribute("data-points")) > 3);
  assert.match(await page.locator("#lab-traj").getAttribute("aria-label"), /train \d+ losses/);
  assert.equal(await page.locator("#lab-thumb").isVisible(), true, await page.locator("#lab-thumb-note").textContent());
  assert.deepEqual(await page.locator("#lab-thumb").evaluate((c) => [c.width, c.height]), [8, 8]);
  assert.equal(await page.locator("#lab-thumb-note").textContent(), "input 1×8×8");
  await untouched();
  await shot(path.join(OUT, "webview-lab-dark.png"));
  // A reload (VS Code reloads a hidden webview) shows the same drill-down again from the saved state.
  await page.reload();
  await waitFor(async () => (await page.locator("#lab-sample-title").textContent()).startsWith(`Sample ${index} · label `),
    { what: "the drill-down restored after a reload" });
  assert.equal(await page.locator("#lab-region-title").textContent(), "Region r1");
  await waitFor(async () => (await page.locator("#lab-regions tbody tr").count()) > 0, { what: "the regions read again after the reload" });
  await idle();
});

test("export a region as csv and json to the file the host picked; a cancelled dialog writes nothing", async () => {
  saveAnswer = "r1.csv";
  await page.selectOption("#lab-format", "csv");
  const text = await labReceipt("export", () => page.click("#lab-export"));
  const m = text.match(/^export: (\d+) samples of r1 as csv \(\d+ bytes\) to (.+)$/);
  assert.ok(m, text);
  const lines = fs.readFileSync(m[2], "utf8").trim().split("\n");
  assert.match(lines[0], /"index"/);
  assert.equal(lines.length, Number(m[1]) + 1);
  const size = Number((await page.locator("#lab-regions tbody tr[data-region=r1] td").nth(1).textContent()));
  assert.equal(Number(m[1]), size, "every member of r1 is exported");

  saveAnswer = "r1.json";
  await page.selectOption("#lab-format", "json");
  const j = await labReceipt("export", () => page.click("#lab-export"));
  const rows = JSON.parse(fs.readFileSync(j.match(/ to (.+)$/)[1], "utf8"));
  assert.equal(rows.length, size);
  assert.ok(rows.every((r) => Number.isInteger(r.index)));

  saveAnswer = undefined;
  await page.click("#lab-export");
  await waitFor(async () => (await labStatus()) === "Export cancelled.", { what: "the cancelled export's note" });
  assert.deepEqual(fs.readdirSync(files).sort(), ["r1.csv", "r1.json"]);
});

test("bad input: an unknown region and a budget of 0 give a clear message in the page; the run is untouched", async () => {
  await session.handleViewMessage(dash.sink, { type: "lab", id: 10_000, request: { op: "region", regionId: "r42" } });
  await waitFor(async () => /^region: NOT_FOUND: .*r42.*r1/.test(await labStatus()), { what: "the unknown region's message" });
  assert.equal(await page.locator("#lab-status").getAttribute("data-error"), "true");
  await page.fill("#lab-budget", "0");
  await page.click("#lab-fork");
  await waitFor(async () => /^fork: INVALID_ARGUMENT: .*budget/i.test(await labStatus()), { what: "the budget 0 message" });
  await untouched();
  assert.equal(await page.locator('#lab-receipts li[data-kind="fork"]').count(), 0, "nothing was forked");
});

test("fork a region with a budget, compare (best per column), recommend with its reason, apply after confirming; the lineage graph", async () => {
  await page.fill("#lab-budget", "200");
  const forked = await labReceipt("fork", () => page.click("#lab-fork"));
  assert.match(forked, new RegExp(`^fork: applied at step ${STEPS}: \\S+`));
  await waitFor(async () => (await page.locator('#lab-lineage g.node[data-kind="specialist"]').count()) === 1,
    { what: "the specialist in the lineage graph" });
  assert.ok((await page.locator("#lab-lineage line.edge").count()) >= 1);

  await page.fill("#lab-extra", "200");
  await page.fill("#lab-resolutions", "continue, upweight-region, fork-route");
  const compared = await labReceipt("compare", () => page.click("#lab-compare"));
  assert.match(compared, new RegExp(`^compare: applied at step ${STEPS}`));
  const rows = page.locator("#lab-compare-table tr[data-resolution]");
  assert.deepEqual(await rows.evaluateAll((r) => r.map((x) => x.dataset.resolution)), ["continue", "upweight-region", "fork-route"]);
  const header = await page.locator("#lab-compare-table tr").first().locator("th").allTextContents();
  assert.equal(header[1], "overall");
  assert.ok(header.includes("FLOPs ×") && header.some((h) => /^region r\d/.test(h)), header.join(" | "));
  // Every column has its best resolution highlighted.
  for (let col = 1; col < header.length; col++) {
    const best = await rows.evaluateAll((r, c) => r.filter((x) => x.children[c].classList.contains("best")).length, col);
    assert.ok(best >= 1, `a best cell in column ${header[col]}`);
  }
  await idle();

  await page.click("#lab-recommend");
  await waitFor(async () => /^Recommended: \S+ — .+\.$/.test(await page.locator("#lab-recommendation").textContent()),
    { what: "the recommendation and its reason" });
  const chosen = (await page.locator("#lab-recommendation").textContent()).match(/^Recommended: (\S+)/)[1];
  await page.click("#lab-apply");
  await page.locator("#lab-apply-confirm:not([hidden])").waitFor();
  assert.equal(await page.locator("#lab-apply-name").textContent(), chosen);
  await page.click("#lab-apply-no"); // cancel: nothing sent
  assert.equal(await page.locator('#lab-receipts li[data-kind="apply"]').count(), 0);
  await page.click("#lab-apply");
  const applied = await labReceipt("apply", () => page.click("#lab-apply-yes"));
  assert.match(applied, new RegExp(`^apply ${chosen}: applied at step ${STEPS} \\((weights|routed)`));
  await waitFor(async () => (await page.locator('#lab-lineage g.node[data-kind="applied"]').count()) === 1,
    { what: "the applied resolution in the lineage graph" });
  await untouched();
  await shot(path.join(OUT, "webview-lab-dark-compare.png"));
  await dash.setTheme("light");
  await shot(path.join(OUT, "webview-lab-light.png"));
  assert.deepEqual(dash.problems, []);
});
