// The compare page: two real trainers' loss histories overlaid, one line per run, in Chromium; a run
// that cannot be read is named with the reason instead of failing the page. Then a live run beside a
// finished session (the session store on disk) and a tracked experiment (the local tracking store),
// both read with no run serving them by the `onthefly stored` CLI the extension spawns.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { core, PYTHON, REPO_ROOT, VSC_ROOT, waitFor } from "../helpers/util.mjs";
import { runTrainerToEnd, startTrainer } from "../helpers/trainer.mjs";
import { launchBrowser } from "../helpers/browser.mjs";
import { openDashboard } from "../helpers/webview-harness.mjs";

const OUT = path.join(VSC_ROOT, "test-results");
let a, b, browser, dash, pastDir;

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
  if (pastDir) fs.rmSync(pastDir, { recursive: true, force: true });
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

test("a live run, a finished session and a tracked experiment overlaid, the stored ones read from disk", async () => {
  pastDir = fs.mkdtempSync(path.join(os.tmpdir(), "otf-past-"));
  fs.writeFileSync(path.join(OUT, "compare-past-trainer.log"),
    await runTrainerToEnd(pastDir, 240, { FIXTURE_RUN_NAME: "past", FIXTURE_HIDDEN: "32" }));
  const reader = { python: PYTHON, cwd: REPO_ROOT, stores: [path.join(pastDir, "store")], trackingRoots: [path.join(pastDir, "dash")],
    env: { ...process.env, PYTHONPATH: [REPO_ROOT, process.env.PYTHONPATH].filter(Boolean).join(path.delimiter) } };
  const stored = await core.listStored(reader);
  const session = stored.find((s) => s.kind === "session");
  const experiment = stored.find((s) => s.kind === "experiment");
  assert.ok(session && experiment, JSON.stringify(stored));
  assert.equal(session.state, "finished");
  assert.equal(session.lastStep, 240);
  assert.equal(experiment.state, "completed");
  assert.equal(experiment.runId, session.runId, "one run, recorded in both stores");

  const live = { kind: "live", target: core.sessionTarget(a.info) };
  const sources = [live, { kind: "stored", run: session }, { kind: "stored", run: experiment }];
  const cache = new Map();
  const view = await core.compareSources(sources, ["loss"], 100, reader, cache);
  const [liveRun, sessionRun, experimentRun] = view.runs;
  assert.deepEqual(view.runs.map((r) => r.kind), ["live", "session", "experiment"]);
  assert.ok(!view.runs.some((r) => r.error), JSON.stringify(view.runs.map((r) => r.error)));
  assert.ok(liveRun.series.loss.x.length > 10);
  for (const run of [sessionRun, experimentRun]) {
    const { x, y } = run.series.loss;
    // 240 steps in 100 buckets: each bucket's min and max (at most 202 points), first and last steps kept.
    assert.ok(x.length <= 202 && x.length > 100, `${run.label}: ${x.length} points`);
    assert.equal(x[0], 1);
    assert.equal(x.at(-1), 240);
    assert.ok(y.every((v) => Number.isFinite(v) && v > 0));
  }
  assert.deepEqual(sessionRun.series.loss, experimentRun.series.loss, "the session store and the tracking store agree");
  assert.equal(cache.size, 2, "finished runs are read once per overlay");

  await dash.page.evaluate((v) => window.dispatchEvent(new MessageEvent("message", { data: { type: "compare", view: v } })), view);
  const chart = dash.page.locator('#compare-charts .chart[data-chart="loss"]');
  await waitFor(async () => (await chart.getAttribute("data-runs")) === "3", { what: "three lines on the loss chart" });
  assert.equal(await chart.getAttribute("data-kinds"), "live,session,experiment");
  const legend = await chart.locator(".u-legend").textContent();
  assert.ok(legend.includes("vscode-tests/fixture") && legend.includes(`vscode-tests/past (${session.id}) · finished`)
    && legend.includes(`${experiment.id} · tracked`), legend);
  assert.match(await dash.page.locator("#compare-caption").textContent(), /3 runs \(1 live, 1 finished session, 1 tracked experiment\)/);
  assert.deepEqual(dash.problems, []);
  await dash.page.screenshot({ path: path.join(OUT, "webview-compare-stored.png") });

  // A session the store no longer has is named with the reason; the other runs are still drawn.
  const gone = { ...session, id: "20990101-000000-gone00" };
  const again = await core.compareSources([live, { kind: "stored", run: gone }, { kind: "stored", run: experiment }], ["loss"], 100, reader);
  assert.match(again.runs[1].error, /no session 20990101-000000-gone00/);
  assert.ok(again.runs[2].series.loss.x.length > 100);
  await dash.page.evaluate((v) => window.dispatchEvent(new MessageEvent("message", { data: { type: "compare", view: v } })), again);
  await waitFor(async () => (await chart.getAttribute("data-runs")) === "2", { what: "two lines once the session is gone" });
  assert.match(await dash.page.locator("#compare-caption").textContent(), /not readable: vscode-tests\/past \(20990101-000000-gone00\) \(no session 20990101-000000-gone00/);
  assert.deepEqual(dash.problems, []);
});
