// End to end in real VS Code (code-server): the dashboard attaches late to a run past 20 000 steps,
// long after its bounded event history rolled over, and still draws it from step 1 (the run's metric
// history); a zoom shows every step of the range. It leaves a screenshot set, dark and light, in
// test-results/ (listed in the extension's README).
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { core, VSC_ROOT, waitFor } from "../helpers/util.mjs";
import { startTrainer } from "../helpers/trainer.mjs";
import { launchBrowser } from "../helpers/browser.mjs";
import { DASHBOARD_IFRAME, dashboardFrame, openWorkbench, runCommand, startCodeServer } from "../helpers/code-server.mjs";

const OUT = path.join(VSC_ROOT, "test-results");
const VSIX = process.env.ONTHEFLY_VSIX || path.join(VSC_ROOT, "dist/onthefly.vsix");
const LATE_STEP = 20_000;
let trainer, second, cs, browser, page;

before(async () => {
  assert.ok(fs.existsSync(VSIX), `no ${VSIX}: run make -C vscode-client package`);
  fs.mkdirSync(OUT, { recursive: true });
  // A tiny, fast model, and a bounded event history far smaller than the run.
  [trainer, browser] = await Promise.all([
    startTrainer({ FIXTURE_HIDDEN: "8", FIXTURE_BATCH: "8", FIXTURE_HISTORY_EVENTS: "4000" }), launchBrowser(),
  ]);
  const probe = new core.RunClient(trainer.info);
  try {
    await waitFor(async () => Number((await probe.status()).step) > LATE_STEP,
      { what: `the run to pass step ${LATE_STEP}`, timeout: 540_000, interval: 1_000 });
  } finally {
    probe.close();
  }
  cs = await startCodeServer({ vsix: VSIX, env: { ONTHEFLY_RUNTIME_DIR: trainer.dir } });
  page = await (await browser.newContext({ viewport: { width: 1400, height: 1000 } })).newPage();
});

after(async () => {
  if (page) await page.screenshot({ path: path.join(OUT, "e2e-late-last.png") }).catch(() => {});
  if (trainer) fs.writeFileSync(path.join(OUT, "e2e-late-trainer.log"), trainer.output());
  if (second) fs.writeFileSync(path.join(OUT, "e2e-late-trainer-2.log"), second.output());
  if (cs) fs.writeFileSync(path.join(OUT, "e2e-late-code-server.log"), cs.log());
  await browser?.close();
  await cs?.stop();
  await second?.stop();
  await trainer?.stop();
});

test(`a late attach to a run past step ${LATE_STEP} draws it from its first steps; screenshots dark and light`, async () => {
  await openWorkbench(page, cs.url);
  await runCommand(page, "OnTheFly: Show Dashboard");
  await page.locator(DASHBOARD_IFRAME).waitFor({ timeout: 90_000 });
  const frame = dashboardFrame(page);
  await frame.locator("#run-label", { hasText: "vscode-tests/fixture" }).waitFor({ timeout: 150_000 });
  const loss = frame.locator('#charts .chart[data-chart="loss"]');
  await waitFor(async () => (await loss.getAttribute("data-first-x", { timeout: 1_000 }).catch(() => null)) === "1",
    { timeout: 60_000, what: "the loss chart to start at step 1" });
  const points = Number(await loss.getAttribute("data-points"));
  assert.ok(points > 1000, `the whole run at chart resolution (${points} points)`);
  assert.doesNotMatch(await frame.locator("#notes").textContent(), /could not be recovered/);
  await page.screenshot({ path: path.join(OUT, "e2e-dark-late-attach.png") });

  // Zoom to the first steps: the trainer sends every one of them.
  const over = loss.locator(".u-over");
  const box = await over.boundingBox();
  await page.mouse.move(box.x + 2, box.y + box.height / 2);
  await page.mouse.down();
  await page.mouse.move(box.x + box.width * 0.01 + 6, box.y + box.height / 2, { steps: 3 });
  await page.mouse.up();
  await waitFor(async () => Number(await frame.locator("body").getAttribute("data-zoom-detail")) > 0, { what: "the zoomed range in detail" });
  await page.screenshot({ path: path.join(OUT, "e2e-dark-zoomed-first-steps.png") });
  await over.dblclick(); // back to the whole run
  await waitFor(async () => (await frame.locator("body").getAttribute("data-zoomed")) === null, { what: "the zoom reset" });

  // The same in the light theme.
  await runCommand(page, "Preferences: Color Theme");
  const input = page.locator(".quick-input-widget .quick-input-box input");
  await input.fill("Light Modern");
  await page.locator(".quick-input-widget .monaco-list-row", { hasText: "Light Modern" }).first().click();
  await waitFor(async () => /vscode-light/.test((await frame.locator("body").getAttribute("class")) ?? ""), { what: "the light theme in the page" });
  await waitFor(async () => Number(await loss.getAttribute("data-points").catch(() => 0)) > 0, { what: "charts redrawn" });
  await page.screenshot({ path: path.join(OUT, "e2e-light-late-attach.png") });
});

test("a second run opens in a tab of its own, side by side with the first", async () => {
  second = await startTrainer({ FIXTURE_RUN_NAME: "second", FIXTURE_HIDDEN: "8", FIXTURE_BATCH: "8" }, { dir: trainer.dir });
  await runCommand(page, "OnTheFly: Open Run in New Tab");
  await page.locator(".quick-input-widget .monaco-list-row", { hasText: "vscode-tests/second" }).first().click();
  await waitFor(async () => (await page.locator(DASHBOARD_IFRAME).count()) === 2, { what: "two dashboard tabs", timeout: 90_000 });
  const labels = async () => {
    const out = [];
    for (let i = 0; i < 2; i++) {
      const frame = page.frameLocator(DASHBOARD_IFRAME).nth(i).frameLocator("iframe#active-frame");
      out.push(await frame.locator("#run-label").textContent({ timeout: 1_000 }).catch(() => ""));
    }
    return out.sort();
  };
  await waitFor(async () => JSON.stringify(await labels()) === JSON.stringify(["vscode-tests/fixture", "vscode-tests/second"]),
    { what: "each tab showing its own run", timeout: 150_000 });
  await page.screenshot({ path: path.join(OUT, "e2e-light-two-runs.png") });
});
