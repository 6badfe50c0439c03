// The Lab panel's "Export slice…" through VS Code's real save dialog, end to end in code-server with the
// packaged .vsix against a real lab trainer: the dialog offers <workspace>/r1.csv, the person names
// another file, and the extension writes the bytes the trainer streamed to exactly that file (the
// trainer writes nothing); Escape in the dialog writes nothing and the page says so.
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
const STEPS = 300;
const LONG = 240_000;
let trainer, cs, browser, page, regions;

before(async () => {
  assert.ok(fs.existsSync(VSIX), `no ${VSIX}: run make -C vscode-client package`);
  fs.mkdirSync(OUT, { recursive: true });
  [trainer, browser] = await Promise.all([startTrainer({ FIXTURE_RUN_NAME: "lab-export" }, { script: "lab_trainer.py" }), launchBrowser()]);
  // Made ready by another client (as `onthefly lab score` / `regions` would): stepped, scored, regions found.
  const session = new core.RunSession(core.sessionTarget(trainer.info), {});
  try {
    const { outcome } = await session.command("step", STEPS);
    assert.equal(outcome.status, "applied", outcome.detail);
    await waitFor(async () => Number((await session.client.status()).step) === STEPS, { what: `${STEPS} steps`, timeout: LONG });
    await session.client.lab.score({}, { timeoutMs: LONG });
    regions = (await session.client.lab.discoverRegions({ k: 8 }, { timeoutMs: LONG })).discovery.regions;
    assert.ok(regions.length > 0);
  } finally {
    await session.dispose();
  }
  cs = await startCodeServer({ vsix: VSIX, env: { ONTHEFLY_RUNTIME_DIR: trainer.dir } });
  const context = await browser.newContext({ viewport: { width: 1400, height: 1000 } });
  page = await context.newPage();
});

after(async () => {
  if (page) await page.screenshot({ path: path.join(OUT, "e2e-lab-export-last.png") }).catch(() => {});
  if (trainer) fs.writeFileSync(path.join(OUT, "e2e-lab-export-trainer.log"), trainer.output());
  if (cs) fs.writeFileSync(path.join(OUT, "e2e-lab-export-code-server.log"), cs.log());
  await browser?.close();
  await cs?.stop();
  await trainer?.stop();
});

test("Export slice… asks VS Code's save dialog and writes the slice to the file picked there; Escape writes nothing", async () => {
  await openWorkbench(page, cs.url);
  await runCommand(page, "OnTheFly: Show Dashboard");
  await page.locator(DASHBOARD_IFRAME).waitFor({ timeout: 90_000 });
  const frame = dashboardFrame(page);
  const r1 = frame.locator('#lab-regions tbody tr[data-region="r1"]');
  await r1.waitFor({ timeout: 150_000 });
  const size = Number(await r1.locator("td").nth(1).textContent());
  assert.equal(size, Number(regions[0].size));
  await r1.locator("button").click();
  await frame.locator("#lab-format").selectOption("csv");

  // VS Code's own save dialog (in code-server: its path input), offering the workspace and the region's name.
  await frame.locator("#lab-export").click();
  const input = page.locator(".quick-input-widget .quick-input-box input");
  await input.waitFor({ timeout: 60_000 });
  await waitFor(async () => (await input.inputValue()).endsWith("r1.csv"), { what: "the dialog to offer r1.csv", timeout: 30_000 });
  assert.ok((await input.inputValue()).includes(path.basename(cs.workspace)), await input.inputValue());
  await page.screenshot({ path: path.join(OUT, "e2e-lab-export-dialog.png") });
  const picked = path.join(cs.workspace, "picked-in-the-dialog.csv");
  await input.fill(picked);
  await input.press("Enter");

  const receipt = frame.locator('#lab-receipts li[data-kind="export"]').first();
  await receipt.waitFor({ timeout: 60_000 });
  const text = await receipt.textContent();
  assert.match(text, new RegExp(`^export: ${size} samples of r1 as csv \\(\\d+ bytes\\) to ${picked.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}$`));
  await waitFor(() => fs.existsSync(picked), { what: `${picked} written by the extension` });
  const lines = fs.readFileSync(picked, "utf8").trim().split("\n");
  assert.equal(lines.length, size + 1, "a header and one line per sample of r1");
  assert.match(lines[0], /loss/);
  assert.deepEqual(fs.readdirSync(cs.workspace).filter((f) => f.endsWith(".csv")), ["picked-in-the-dialog.csv"], "only the picked file");

  // Escape in the dialog: nothing written, the page says the export was cancelled.
  await frame.locator("#lab-format").selectOption("json");
  await frame.locator("#lab-export").click();
  await input.waitFor({ timeout: 60_000 });
  await waitFor(async () => (await input.inputValue()).endsWith("r1.json"), { what: "the dialog to offer r1.json", timeout: 30_000 });
  await input.press("Escape");
  await frame.locator("#lab-status", { hasText: "Export cancelled." }).waitFor({ timeout: 30_000 });
  assert.deepEqual(fs.readdirSync(cs.workspace).filter((f) => /\.(csv|json)$/.test(f)), ["picked-in-the-dialog.csv"]);
  await page.screenshot({ path: path.join(OUT, "e2e-lab-export.png") });
});
