// The dashboard page in headless Chromium, fed by a real trainer through a real RunSession:
// charts draw and move, the histogram, logs and runtime panels fill, controls send commands and show
// receipts, PNG export, keyboard use, reload restores from the saved state, health checks with their
// findings, checkpoint and session export, light and dark themes.
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
const exportsDir = fs.mkdtempSync(path.join(os.tmpdir(), "otf-png-"));
let trainer, session, browser, dash, page;
/** What the host's "where to export?" dialog answers next (undefined = the person cancelled). */
let exportAnswer;

const points = (id) => page.locator(`#charts .chart[data-chart="${id}"]`).getAttribute("data-points").then(Number).catch(() => 0);
const receipt = (command) => page.locator(`#receipts li[data-command="${command}"]`).first();
/** Longer than the client's own 60 s deadline: a call that hangs still ends in an "error" receipt that says why. */
const RECEIPT_MS = 90_000;

/**
 * Does `act` (a click, a key), checks that the page really sent `command` to the host, then waits for
 * its receipt. Each step fails on its own, saying which.
 */
async function sendAndAwaitReceipt(command, act) {
  const count = () => dash.toHost.filter((m) => m.type === "command" && m.command === command).length;
  const before = count();
  await act();
  await waitFor(() => count() > before, { timeout: 15_000, what: `the host to receive "${command}" from the page` });
  await receipt(command).waitFor({ timeout: RECEIPT_MS });
  return receipt(command).textContent();
}

before(async () => {
  fs.mkdirSync(OUT, { recursive: true });
  [trainer, browser] = await Promise.all([startTrainer(), launchBrowser()]);
  session = new core.RunSession(core.sessionTarget(trainer.info), {
    statusIntervalMs: 500,
    savePng: async (name, png) => {
      const file = path.join(exportsDir, `${name}.png`);
      fs.writeFileSync(file, png);
      return file;
    },
    pickExportPath: async () => exportAnswer,
  });
  session.start();
  dash = await openDashboard(browser, session, { theme: "dark" });
  page = dash.page;
});

after(async () => {
  if (trainer) fs.writeFileSync(path.join(OUT, "webview-trainer.log"), trainer.output());
  if (dash) fs.writeFileSync(path.join(OUT, "webview-page.log"), dash.problems.join("\n"));
  await dash?.close();
  await browser?.close();
  await session?.dispose();
  await trainer?.stop();
  fs.rmSync(exportsDir, { recursive: true, force: true });
});

test("live charts draw and move; histogram, logs and runtime fill in", async () => {
  await page.locator("#run-label", { hasText: "vscode-tests/fixture" }).waitFor({ timeout: 30_000 });
  await waitFor(async () => (await points("loss")) >= 20, { what: "20 points on the loss chart" });
  const before = await points("loss");
  await waitFor(async () => (await points("loss")) >= before + 20, { what: "the loss chart to move" });
  for (const id of ["lr", "grad_norm", "samples_per_second"]) assert.ok((await points(id)) > 0, `${id} chart has points`);
  assert.match(await page.locator("#state").textContent(), /^(running|testing)$/);
  await waitFor(async () => Number(await page.locator("#hist").getAttribute("data-bars")) > 3, { what: "histogram bars" });
  assert.match(await page.locator("#hist-caption").textContent(), /median [\d.]+ · 25–75 %/);
  assert.ok(await page.locator("#hist-top li").count() > 0, "highest-loss samples listed");
  await page.locator("#logs .log", { hasText: "step 25 done" }).first().waitFor({ timeout: 30_000 });
  await page.locator("#runtime dt", { hasText: "CPU" }).waitFor({ timeout: 30_000 });
  assert.equal(await page.locator("#runtime dd").first().textContent(), "cpu");
  // The canvas really has ink on it (not just a data attribute).
  const inked = await page.evaluate(() => {
    const c = document.querySelector('#charts .chart[data-chart="loss"] canvas');
    const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
    return n;
  });
  assert.ok(inked > 1000, `loss canvas has drawn pixels (${inked})`);
});

test("log panel filters by level and searches", async () => {
  await page.locator("#logs .log.warning").first().waitFor({ timeout: 30_000 });
  await page.selectOption("#log-level", "3");
  await waitFor(async () => (await page.locator("#logs .log.info").count()) === 0, { what: "info lines hidden" });
  assert.ok(await page.locator("#logs .log.warning").count() > 0);
  await page.selectOption("#log-level", "1");
  // Search for a whole line the page holds ("step N done"): the search is trimmed, so "step 50 " would also
  // match "step 500 done" once the trainer gets there, and which lines the page holds depends on when it
  // subscribed.
  const needle = await page.locator("#logs .log.info .log-msg").first().textContent();
  assert.match(needle, /^step \d+ done$/);
  await page.fill("#log-search", needle);
  await waitFor(async () => {
    const texts = await page.locator("#logs .log .log-msg").allTextContents();
    return texts.length > 0 && texts.every((t) => t.includes(needle));
  }, { what: `search for "${needle}" to filter` });
  await page.fill("#log-search", "");
  assert.match(await page.locator("#log-count").textContent(), /^\d+ of \d+$/);
});

test("controls send commands and show receipts with the step they were applied at", async () => {
  const text = await sendAndAwaitReceipt("pause", () => page.click("#btn-pause"));
  const step = Number(/pause: applied at step (\d+)/.exec(text)?.[1]);
  assert.ok(step > 0, text);
  const st = await session.client.status();
  assert.equal(st.state, core.runPb.RunState.PAUSED, "the trainer is really paused");
  assert.equal(Number(st.step), step);
  await page.locator("#state", { hasText: "paused" }).waitFor();
  assert.equal(await page.locator("#btn-pause").isDisabled(), true);
  assert.equal(await page.locator("#btn-resume").isDisabled(), false);

  await page.fill("#lr-input", "0.01");
  assert.match(await sendAndAwaitReceipt("setLr", () => page.press("#lr-input", "Enter")), /set learning rate: applied at step \d+ \(lr=0.01\)/);
  assert.equal((await session.client.status()).hyperparameters[0].values.lr, 0.01);

  assert.match(await sendAndAwaitReceipt("runTest", () => page.click("#btn-test")), /run test: applied at step \d+ \(test loss [\d.]+ over 1024 samples/);
  await waitFor(async () => (await page.locator("#hist-split option").allTextContents()).includes("test"), { what: "test split in the histogram" });
  await page.locator('#charts .chart[data-chart="eval/loss"] .u-legend', { hasText: "test loss" }).waitFor({ timeout: 30_000 });
  await page.screenshot({ path: path.join(OUT, "webview-dark-paused.png"), fullPage: true });
});

test("charts export PNG through the host", async () => {
  await page.locator('#charts .chart[data-chart="loss"] button[data-export="loss"]').click();
  await page.locator("#toast", { hasText: "Saved" }).waitFor({ timeout: 10_000 });
  const file = await waitFor(() => fs.readdirSync(exportsDir).filter((f) => f.endsWith("-loss.png")).map((f) => path.join(exportsDir, f))[0],
    { what: "the exported PNG" });
  const bytes = fs.readFileSync(file);
  assert.deepEqual([...bytes.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  assert.ok(bytes.length > 2000);
});

test("keyboard: shortcuts steer, charts zoom and reset", async () => {
  // From paused, run a long step budget: Resume stays enabled while it runs and ends it early.
  await page.fill("#step-count", "100000");
  assert.match(await sendAndAwaitReceipt("step", () => page.click("#btn-step")), /step: applied at step \d+/);
  await page.locator("#state", { hasText: "running" }).waitFor();
  await page.locator("body").click({ position: { x: 5, y: 5 } });
  await page.locator("#btn-resume:not([disabled])").waitFor({ timeout: 30_000 });
  assert.match(await sendAndAwaitReceipt("resume", () => page.keyboard.press("r")), /resume: applied at step \d+/);
  await waitFor(async () => Number((await session.client.status()).pendingSteps) === 0, { what: "the step budget dropped" });
  await page.locator("#state", { hasText: "running" }).waitFor();
  const chart = page.locator('#charts .chart[data-chart="loss"]');
  await chart.focus();
  await page.keyboard.press("+");
  await waitFor(() => page.evaluate(() => document.body.dataset.zoomed === "true"), { what: "zoomed" });
  await page.keyboard.press("0");
  await waitFor(() => page.evaluate(() => document.body.dataset.zoomed !== "true"), { what: "zoom reset", timeout: 5_000 }).catch((err) => {
    throw new Error(`${err.message}\n${dash.problems.join("\n")}`);
  });
  // Mouse: drag a range to zoom every step chart, double-click to follow the live edge again.
  const over = chart.locator(".u-over");
  const box = await over.boundingBox();
  await page.mouse.move(box.x + box.width * 0.3, box.y + box.height / 2);
  await page.mouse.down();
  await page.mouse.move(box.x + box.width * 0.6, box.y + box.height / 2, { steps: 5 });
  await page.mouse.up();
  await waitFor(() => page.evaluate(() => document.body.dataset.zoomed === "true"), { what: "drag zoom" });
  await over.dblclick();
  await waitFor(() => page.evaluate(() => document.body.dataset.zoomed !== "true"), { what: "double-click reset", timeout: 5_000 });
  // Tab moves through the tools in order (ones whose enabled state does not follow the run's state:
  // a control that is disabled for a moment, e.g. while validation runs, is rightly skipped).
  await page.locator("#x-axis").focus();
  await page.keyboard.press("Tab");
  assert.equal(await page.evaluate(() => document.activeElement.id), "smooth");
});

test("reload restores the charts from the saved state and the host sends only what is newer", async () => {
  await waitFor(async () => (await page.evaluate(() => Number(document.body.dataset.savedSeq || 0))) > 0, { what: "a saved state" });
  const before = await points("loss");
  await page.reload();
  // Charts are drawn from the saved state before the host sends anything newer.
  const restored = Number(await page.evaluate(() => document.body.dataset.restoredPoints));
  assert.ok(restored >= before, `restored ${restored} points, had ${before}`);
  const ready = await waitFor(() => page.evaluate(() => window.__otfSent.find((m) => m.type === "ready")), { what: "ready" });
  assert.ok(ready.lastSeq > 0 && ready.runId === trainer.info.runId, JSON.stringify(ready));
  const firstDelta = await waitFor(() => page.evaluate(() => window.__otfReceived.find((m) => m.type === "delta")), { what: "a delta" });
  assert.equal(firstDelta.reset, false, "not re-streamed from zero");
  await waitFor(async () => (await points("loss")) > before, { what: "the chart to continue" });
});

test("health: Run health checks lists every check's findings with severity, message and evidence", async () => {
  // lr=0 is a configuration problem the checks must report; the rest of the fixture is healthy.
  const zero = await session.command("setLr", 0);
  assert.equal(zero.outcome.status, "applied", zero.receipt.text);
  assert.match(await page.locator("#health-summary").textContent(), /Not run yet/);
  await page.locator("#btn-health").click();
  const summary = page.locator("#health-summary", { hasText: /^health at step \d+: \d+ errors?, \d+ warnings?, \d+ notes? \(held the loop [\d.]+ s\)/ });
  await summary.waitFor({ timeout: 180_000 });
  const step = Number(/at step (\d+)/.exec(await summary.textContent())[1]);
  assert.ok(step > 0);
  assert.equal(await page.locator("#btn-health").getAttribute("aria-busy"), "false", "not busy once the report is in");
  const checks = new Set(await page.locator("#health-findings li.finding").evaluateAll((els) => els.map((e) => e.dataset.check)));
  assert.deepEqual([...checks].sort(), ["activations", "checkpoints", "configuration", "determinism", "gradients", "numerics", "throughput"]);
  const lrWarning = page.locator('#health-findings li.finding[data-severity="warning"][data-check="configuration"]', { hasText: "lr=0" });
  assert.equal(await lrWarning.count(), 1, await page.locator("#health-findings").innerText());
  assert.equal(await lrWarning.locator(".sev").textContent(), "warning");
  assert.deepEqual(await lrWarning.locator(".evidence dt").allTextContents(), ["lr"]);
  assert.equal(await lrWarning.locator(".evidence dd").textContent(), "0");
  // Sorted worst first; info findings carry their numbers too.
  assert.notEqual(await page.locator("#health-findings li.finding").first().getAttribute("data-severity"), "info");
  const grads = page.locator('#health-findings li.finding[data-check="gradients"]').first();
  assert.ok((await grads.locator(".evidence dt").allTextContents()).includes("total_grad_norm"));
  // The trainer ran them as one command at that step: its CommandApplied event names the same step.
  await page.locator('#receipts li[data-command="health_check"]', { hasText: `health checks: applied at step ${step}` }).waitFor({ timeout: 30_000 });

  // One check, warnings only: the panel lists just what was asked for.
  await page.selectOption("#health-check", "numerics");
  await page.locator("#health-info").uncheck();
  await page.locator("body").click({ position: { x: 5, y: 5 } });
  await page.keyboard.press("h"); // the keyboard shortcut
  await page.locator("#health-summary", { hasText: /\[numerics\]/ }).waitFor({ timeout: 180_000 });
  assert.equal(await page.locator("#health-findings li.finding").count(), 0, "a healthy run has no numerics warnings");
  assert.match(await page.locator("#health-findings").textContent(), /\d+ note\(s\) hidden/);
  await page.locator("#health-info").check();
  assert.deepEqual(new Set(await page.locator("#health-findings li.finding").evaluateAll((els) => els.map((e) => e.dataset.check))), new Set(["numerics"]));
  await page.screenshot({ path: path.join(OUT, "webview-health.png"), fullPage: true });
  await page.selectOption("#health-check", "");
  const back = await session.command("setLr", 0.01);
  assert.equal(back.outcome.status, "applied", back.receipt.text);
});

test("Checkpoint and Export Session… answer with receipts; the bundle is where the person chose", async () => {
  await page.click("#btn-checkpoint");
  // Ours, not the checkpoint the trainer took on its own when it paused earlier: ours names its size.
  const CK = /^checkpoint: applied at step (\d+) \((\S+), [\d.]+ (?:B|KiB|MiB|GiB)\)$/;
  const mine = page.locator('#receipts li[data-command="checkpoint"] span', { hasText: CK });
  await mine.waitFor({ timeout: 60_000 });
  const ck = CK.exec(await mine.textContent());
  const listed = await session.client.sessions.listCheckpoints({});
  assert.ok(listed.checkpoints.some((c) => c.checkpointId === ck[2] && Number(c.step) === Number(ck[1])), "the trainer keeps that checkpoint");

  // Cancelled dialog: nothing is sent, the button is usable again.
  exportAnswer = undefined;
  await page.click("#btn-export");
  await waitFor(async () => !(await page.locator("#btn-export").isDisabled()), { what: "the export button back after a cancel" });
  assert.equal(await receipt("exportSession").count(), 0);

  exportAnswer = path.join(exportsDir, "fixture.onthefly");
  await page.click("#btn-export");
  await receipt("exportSession").waitFor({ timeout: 180_000 });
  const text = await receipt("exportSession").locator("span").textContent();
  assert.match(text, /^export session: applied at step \d+ \(.*fixture\.onthefly, [\d.]+ (?:KiB|MiB|GiB), \d+ checkpoints?\)$/);
  assert.ok(text.includes(exportAnswer), text);
  assert.ok(fs.statSync(exportAnswer).size > 1000, "the trainer wrote the bundle");
});

test("theme-aware: light theme renders with the theme's colors; no CSP violations", async () => {
  await page.screenshot({ path: path.join(OUT, "webview-dark.png"), fullPage: true });
  await dash.setTheme("light");
  await waitFor(async () => (await page.evaluate(() => getComputedStyle(document.body).backgroundColor)) === "rgb(255, 255, 255)", { what: "light background" });
  await waitFor(async () => (await points("loss")) > 0, { what: "charts rebuilt" });
  const stroke = await page.evaluate(() => {
    const c = document.querySelector('#charts .chart[data-chart="loss"] canvas');
    const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
    // Count light-theme blue (#1a85ff) pixels: the series color comes from --vscode-charts-blue.
    let n = 0;
    for (let i = 0; i < d.length; i += 4) if (Math.abs(d[i] - 0x1a) < 30 && Math.abs(d[i + 1] - 0x85) < 30 && d[i + 2] > 200) n++;
    return n;
  });
  assert.ok(stroke > 50, `loss series drawn in the theme's blue (${stroke} px)`);
  await page.screenshot({ path: path.join(OUT, "webview-light.png"), fullPage: true });
  assert.deepEqual(await page.evaluate(() => window.__cspViolations), []);
  assert.deepEqual(dash.problems.filter((p) => !/favicon/.test(p)), []);
});

test("Stop ends the run; the page says so", async () => {
  assert.match(await sendAndAwaitReceipt("stop", () => page.click("#btn-stop")), /stop: applied at step \d+/);
  await page.locator("#state", { hasText: "finished" }).waitFor({ timeout: 30_000 });
  assert.equal((await trainer.exited).code, 0);
  assert.equal(await page.locator("#btn-attach").isHidden(), false, "offers to attach to another run");
});
