// Following the work: the attached run ends, the script is run again (a new run of the same project in
// the same discovery dir); the page offers the new run, and switching shows it from its first step.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { core, VSC_ROOT, waitFor } from "../helpers/util.mjs";
import { startTrainer } from "../helpers/trainer.mjs";
import { launchBrowser } from "../helpers/browser.mjs";
import { openDashboard } from "../helpers/webview-harness.mjs";

const OUT = path.join(VSC_ROOT, "test-results");
let first, second, browser, dash, page;
const sessions = [];
let switchAsked;

function follow(info) {
  const session = new core.RunSession(core.sessionTarget(info), {
    statusIntervalMs: 500, successorPollMs: 200, discoveryDir: () => first.dir,
    onAttachRequest: (runId) => {
      switchAsked = runId;
    },
  });
  sessions.push(session);
  session.start();
  return session;
}

before(async () => {
  fs.mkdirSync(OUT, { recursive: true });
  [first, browser] = await Promise.all([startTrainer({ FIXTURE_MAX_STEPS: "120" }), launchBrowser()]);
  dash = await openDashboard(browser, follow(first.info), { theme: "dark" });
  page = dash.page;
});

after(async () => {
  if (first) fs.writeFileSync(path.join(OUT, "follow-trainer-1.log"), first.output());
  if (second) fs.writeFileSync(path.join(OUT, "follow-trainer-2.log"), second.output());
  if (dash) fs.writeFileSync(path.join(OUT, "follow-page.log"), dash.problems.join("\n"));
  await dash?.close();
  await browser?.close();
  for (const s of sessions) await s.dispose();
  await second?.stop();
  await first?.stop();
});

test("when the run ends and the script starts again, the page offers the new run; switching shows it", async () => {
  await waitFor(() => sessions[0].connection.state === "ended", { what: "the first run to end", timeout: 180_000 });
  assert.equal(await page.locator("#btn-switch").count(), 0, "nothing to offer before a new run starts");
  second = await startTrainer({ FIXTURE_RUN_NAME: "fixture-again" }, { dir: first.dir });
  const offer = page.locator("#btn-switch");
  await offer.waitFor({ timeout: 30_000 });
  assert.match(await offer.textContent(), /vscode-tests\/fixture-again/);
  await offer.click();
  await waitFor(() => switchAsked === second.info.runId, { what: "the host asked to attach to the new run" });
  await dash.switchTo(follow(second.info));
  await page.locator("#run-label", { hasText: "vscode-tests/fixture-again" }).waitFor({ timeout: 30_000 });
  await waitFor(async () => Number(await page.locator('#charts .chart[data-chart="loss"]').getAttribute("data-points").catch(() => 0)) > 10,
    { what: "the new run's loss chart" });
  assert.equal(await page.locator('#charts .chart[data-chart="loss"]').getAttribute("data-first-x"), "1", "from its first step");
  assert.equal(await page.locator("#btn-switch").count(), 0, "the offer is gone");
});
