// "OnTheFly: Compare Runs…" end to end in code-server with the packaged .vsix: the palette's pick list
// offers the running trainer, the finished session in the session store and the tracked experiment in
// the local tracking store (listed by the extension through `onthefly stored list`, spawned with the
// interpreter of the onthefly.pythonPath setting); picking all three opens the overlay with a line each.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { PYTHON, REPO_ROOT, VSC_ROOT } from "../helpers/util.mjs";
import { runTrainerToEnd, startTrainer } from "../helpers/trainer.mjs";
import { launchBrowser } from "../helpers/browser.mjs";
import { DASHBOARD_IFRAME, dashboardFrame, openWorkbench, runCommand, startCodeServer } from "../helpers/code-server.mjs";

const OUT = path.join(VSC_ROOT, "test-results");
const VSIX = process.env.ONTHEFLY_VSIX || path.join(VSC_ROOT, "dist/onthefly.vsix");
let past, live, cs, browser, page;

before(async () => {
  assert.ok(fs.existsSync(VSIX), `no ${VSIX}: run make -C vscode-client package`);
  fs.mkdirSync(OUT, { recursive: true });
  past = fs.mkdtempSync(path.join(os.tmpdir(), "otf-past-"));
  await runTrainerToEnd(past, 200, { FIXTURE_RUN_NAME: "past", FIXTURE_HIDDEN: "32" });
  [live, browser] = await Promise.all([startTrainer(), launchBrowser()]);
  cs = await startCodeServer({
    vsix: VSIX,
    // The stores' defaults come from the environment, as in a terminal where the runs were started;
    // PYTHONPATH: this checkout's package, whichever checkout the shared venv was installed from.
    env: { ONTHEFLY_RUNTIME_DIR: live.dir, ONTHEFLY_STORE: path.join(past, "store"), ONTHEFLY_DASH_ROOT: path.join(past, "dash"),
      PYTHONPATH: REPO_ROOT },
    settings: { "onthefly.pythonPath": PYTHON },
  });
  page = await (await browser.newContext({ viewport: { width: 1400, height: 900 } })).newPage();
});

after(async () => {
  if (page) await page.screenshot({ path: path.join(OUT, "e2e-compare-last.png") }).catch(() => {});
  if (cs) fs.writeFileSync(path.join(OUT, "e2e-compare-code-server.log"), cs.log());
  await browser?.close();
  await cs?.stop();
  await live?.stop();
  if (past) fs.rmSync(past, { recursive: true, force: true });
});

test("Compare Runs… offers the live run, the finished session and the tracked experiment; all three overlaid", async () => {
  await openWorkbench(page, cs.url);
  await runCommand(page, "OnTheFly: Compare Runs");
  const rows = page.locator(".quick-input-widget .monaco-list-row");
  const session = rows.filter({ hasText: "vscode-tests/past (" });
  const experiment = rows.filter({ hasText: "/vscode-tests/past/" });
  await session.first().waitFor({ timeout: 60_000 });
  await experiment.first().waitFor({ timeout: 10_000 });
  assert.match(await session.first().textContent(), /finished · last step 200/);
  assert.match(await experiment.first().textContent(), /completed/);
  await page.screenshot({ path: path.join(OUT, "e2e-compare-pick.png") });
  await session.first().click();
  await experiment.first().click();
  await page.locator(".quick-input-widget .quick-input-box input").press("Enter");

  await page.locator(DASHBOARD_IFRAME).waitFor({ timeout: 90_000 });
  const chart = dashboardFrame(page).locator('#compare-charts .chart[data-chart="loss"]');
  await chart.waitFor({ timeout: 120_000 });
  assert.equal(await chart.getAttribute("data-kinds"), "live,session,experiment");
  const legend = await chart.locator(".u-legend").textContent();
  assert.ok(legend.includes("vscode-tests/fixture") && legend.includes("· finished") && legend.includes("· tracked"), legend);
  assert.match(await dashboardFrame(page).locator("#compare-caption").textContent(), /3 runs \(1 live, 1 finished session, 1 tracked experiment\)/);
  await page.screenshot({ path: path.join(OUT, "e2e-compare.png") });
});
