// The dashboard attaching late to a real trainer whose bounded event history has rolled over: the
// charts still start at step 1 (the run's metric history) with no gap notice; a zoom brings every
// step of the range; log/linear per chart; y tick labels fit at three widths (a real browser measures).
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { core, VSC_ROOT, waitFor } from "../helpers/util.mjs";
import { startTrainer } from "../helpers/trainer.mjs";
import { launchBrowser } from "../helpers/browser.mjs";
import { openDashboard } from "../helpers/webview-harness.mjs";

const OUT = path.join(VSC_ROOT, "test-results");
const HISTORY = 1500;
let trainer, session, browser, dash, page;

const chart = (id) => page.locator(`#charts .chart[data-chart="${id}"]`);
const attr = (id, name) => chart(id).getAttribute(name).catch(() => null);

before(async () => {
  fs.mkdirSync(OUT, { recursive: true });
  [trainer, browser] = await Promise.all([startTrainer({ FIXTURE_HISTORY_EVENTS: String(HISTORY) }), launchBrowser()]);
  const probe = new core.RunClient(trainer.info);
  try {
    // Attach only once the run's bounded event history no longer holds its first steps.
    await waitFor(async () => Number((await probe.status()).lastSeq) > 3 * HISTORY, { what: "the event history to roll over", timeout: 120_000 });
  } finally {
    probe.close();
  }
  session = new core.RunSession(core.sessionTarget(trainer.info), { statusIntervalMs: 500 });
  session.start();
  dash = await openDashboard(browser, session, { theme: "dark" });
  page = dash.page;
});

after(async () => {
  if (trainer) fs.writeFileSync(path.join(OUT, "history-trainer.log"), trainer.output());
  if (dash) fs.writeFileSync(path.join(OUT, "history-page.log"), dash.problems.join("\n"));
  await dash?.close();
  await browser?.close();
  await session?.dispose();
  await trainer?.stop();
});

test("a late attach draws the whole run from step 1, with no gap notice", async () => {
  await waitFor(async () => (await attr("loss", "data-first-x")) === "1", { what: "the loss chart to start at step 1" });
  const points = Number(await attr("loss", "data-points"));
  assert.ok(points > 100, `${points} points`);
  const notes = await page.locator("#notes").textContent();
  assert.doesNotMatch(notes, /could not be recovered/, "the metric history covers what the stream no longer holds");
  for (const id of ["lr", "grad_norm", "samples_per_second"]) assert.equal(await attr(id, "data-first-x"), "1", `${id} starts at step 1`);
});

test("a zoom asks the trainer for the range and draws every step of it", async () => {
  const over = chart("loss").locator(".u-over");
  const box = await over.boundingBox();
  await page.mouse.move(box.x + box.width * 0.05, box.y + box.height / 2);
  await page.mouse.down();
  await page.mouse.move(box.x + box.width * 0.08, box.y + box.height / 2, { steps: 4 });
  await page.mouse.up();
  await waitFor(() => page.evaluate(() => Number(document.body.dataset.zoomDetail || 0) > 0), { what: "the zoomed range in detail" });
  const asked = dash.toHost.filter((m) => m.type === "zoom").at(-1);
  assert.ok(asked && asked.names.includes("loss") && asked.max > asked.min, JSON.stringify(asked));
  const detail = await session.zoomHistory(["loss"], asked.min, asked.max, asked.buckets);
  const steps = detail.loss.x;
  for (let i = 1; i < steps.length; i++) assert.equal(steps[i], steps[i - 1] + 1, "every step of a narrow range");
  assert.equal(Number(await page.evaluate(() => document.body.dataset.zoomDetail)), steps.length);
  await over.dblclick();
  await waitFor(() => page.evaluate(() => document.body.dataset.zoomed !== "true" && !document.body.dataset.zoomDetail), { what: "zoom reset" });
});

test("each chart switches between a linear and a log y axis", async () => {
  const toggle = chart("loss").locator("button[data-scale]");
  const before = await attr("loss", "data-scale");
  assert.ok(before === "linear" || before === "log");
  await toggle.click();
  const flipped = before === "log" ? "linear" : "log";
  await waitFor(async () => (await attr("loss", "data-scale")) === flipped, { what: `the loss chart on a ${flipped} axis` });
  assert.ok(Number(await attr("loss", "data-points")) > 100, "still drawn");
  assert.equal(await chart("samples_per_second").locator("button[data-scale]").count(), 0, "throughput has no log toggle");
  await chart("loss").locator("button[data-scale]").click();
  await waitFor(async () => (await attr("loss", "data-scale")) === before, { what: "back to the first axis" });
});

test("y tick labels are never clipped, at three widths", async () => {
  const { outcome } = await session.command("setLr", 1.5e-5); // scientific labels: "1.50e-5"
  assert.equal(outcome.status, "applied", outcome.detail);
  await chart("lr").locator("button[data-scale]").click(); // 0.02 then 1.5e-5: a log axis labels both decades
  await waitFor(async () => (await attr("lr", "data-scale")) === "log", { what: "the lr chart on a log axis" });
  for (const width of [480, 900, 1500]) {
    await page.setViewportSize({ width, height: 1000 });
    await waitFor(async () => /e-5/.test((await attr("lr", "data-y-labels")) ?? ""), { what: `scientific lr labels at width ${width}` });
    for (const id of ["loss", "lr", "grad_norm", "samples_per_second", "step_seconds"]) {
      const room = Number(await attr(id, "data-y-label-room"));
      const widest = Number(await attr(id, "data-y-label-widest"));
      const labels = await attr(id, "data-y-labels");
      assert.ok(widest > 0 && widest <= room, `${id} at width ${width}: widest label ${widest}px in ${room}px (${labels})`);
    }
    await page.screenshot({ path: path.join(OUT, `webview-history-${width}.png`), fullPage: false });
  }
  const epochs = await page.evaluate(() => [...document.querySelectorAll("#x-axis option")].map((o) => o.value));
  assert.ok(epochs.includes("epoch"));
});
