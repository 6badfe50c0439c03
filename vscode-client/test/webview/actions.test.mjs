// Restore a checkpoint (picked from the ring) and import a bundle (picked by the host's file dialog)
// from the dashboard, against a real trainer: receipts in the page, the charts rewound to the restored
// state; bad input (a file that is no bundle, a checkpoint that vanished) gives a clear message in the
// page and leaves the run as it was.
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
const files = fs.mkdtempSync(path.join(os.tmpdir(), "otf-actions-"));
let trainer, session, browser, dash, page;
/** What the host's open dialog answers next (undefined = the person cancelled). */
let importAnswer;
const RECEIPT_MS = 180_000;

const receiptText = (command) => page.locator(`#receipts li[data-command="${command}"] span`).first().textContent();
async function freshReceipt(command, act) {
  const count = () => page.locator(`#receipts li[data-command="${command}"]`).count();
  const n = await count();
  await act();
  await waitFor(async () => (await count()) > n, { what: `a new "${command}" receipt`, timeout: RECEIPT_MS });
  return receiptText(command);
}
const status = () => session.client.status();

before(async () => {
  fs.mkdirSync(OUT, { recursive: true });
  [trainer, browser] = await Promise.all([startTrainer(), launchBrowser()]);
  session = new core.RunSession(core.sessionTarget(trainer.info), {
    statusIntervalMs: 500,
    pickImportPath: async () => importAnswer,
    pickExportPath: async (name) => path.join(files, name),
  });
  session.start();
  dash = await openDashboard(browser, session, { theme: "light" });
  page = dash.page;
  await waitFor(async () => Number((await status()).step) > 60, { what: "60 steps" });
  const { outcome } = await session.command("pause");
  assert.equal(outcome.status, "applied", outcome.detail);
});

after(async () => {
  if (trainer) fs.writeFileSync(path.join(OUT, "actions-trainer.log"), trainer.output());
  if (dash) fs.writeFileSync(path.join(OUT, "actions-page.log"), dash.problems.join("\n"));
  await dash?.close();
  await browser?.close();
  await session?.dispose();
  await trainer?.stop();
  fs.rmSync(files, { recursive: true, force: true });
});

test("restore: pick a checkpoint of the ring, get its receipt; the run and the charts go back to it", async () => {
  const early = Number((await status()).step);
  await freshReceipt("checkpoint", () => page.click("#btn-checkpoint"));
  const { outcome } = await session.command("step", 40);
  assert.equal(outcome.status, "applied", outcome.detail);
  await waitFor(async () => Number((await status()).step) === early + 40 && (await status()).state === core.runPb.RunState.PAUSED,
    { what: "40 more steps, paused" });
  await page.click("#btn-restore");
  await page.locator("#restore-picker:not([hidden])").waitFor({ timeout: 15_000 });
  const options = await page.locator("#ckpt-select option").allTextContents();
  const pick = options.findIndex((t) => t.startsWith(`step ${early} · request`));
  assert.ok(pick >= 0, `our checkpoint is listed: ${options.join(" | ")}`);
  await page.selectOption("#ckpt-select", { index: pick });
  const text = await freshReceipt("restoreCheckpoint", () => page.click("#btn-restore-go"));
  assert.match(text, new RegExp(`^restore checkpoint: applied at step \\d+ \\(\\S+, the state at step ${early}\\)$`));
  await waitFor(async () => Number((await status()).step) === early, { what: `the run back at step ${early}` });
  await page.locator("#restore-picker[hidden]").waitFor({ state: "attached" });
  // The charts take the restored history: the loss chart ends at the restored step again.
  await waitFor(async () => {
    const loss = session.store.seriesPoints("loss");
    return loss.x.at(-1) === early;
  }, { what: `the loss series to end at step ${early}` });
  await page.screenshot({ path: path.join(OUT, "webview-light-restored.png"), fullPage: true });
});

test("import: a bundle continues the run; a file that is not one is refused with a clear message", async () => {
  const bundle = path.join(files, "exported.onthefly");
  const exported = await session.command("exportSession", bundle);
  assert.equal(exported.outcome.status, "applied", exported.outcome.detail);
  const before = await status();

  importAnswer = path.join(files, "notes.txt");
  fs.writeFileSync(importAnswer, "these are not the weights you are looking for\n");
  const bad = await freshReceipt("importSession", () => page.click("#btn-import"));
  assert.match(bad, /^import session: (failed|rejected): .*\S/, bad);
  assert.doesNotMatch(bad, /UNKNOWN|Traceback/, bad);
  const still = await status();
  assert.equal(Number(still.step), Number(before.step), "a refused import leaves the run where it was");

  importAnswer = undefined; // the person closes the dialog: nothing is sent
  await page.click("#btn-import");
  await waitFor(async () => !(await page.locator("#btn-import").isDisabled()), { what: "the import button back after a cancel" });

  importAnswer = bundle;
  const good = await freshReceipt("importSession", () => page.click("#btn-import"));
  assert.match(good, new RegExp(`^import session: applied at step \\d+ \\(.*exported\\.onthefly: continues from step ${Number(before.step)}\\)$`), good);
});

// Last: the ring keeps listing the deleted checkpoint, and an export then fails on it.
test("a checkpoint that vanished: a clear message in the page, the run untouched", async () => {
  await freshReceipt("checkpoint", () => page.click("#btn-checkpoint"));
  const before = await status();
  await page.click("#btn-restore");
  await page.locator("#restore-picker:not([hidden])").waitFor({ timeout: 15_000 });
  const id = await page.locator("#ckpt-select").inputValue(); // the newest: the one just taken
  const dirs = [];
  const walk = (d) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      if (!e.isDirectory()) continue;
      if (e.name === id) dirs.push(path.join(d, e.name));
      else walk(path.join(d, e.name));
    }
  };
  walk(path.join(trainer.dir, "store"));
  assert.equal(dirs.length, 1, `found the checkpoint's folder for ${id}`);
  fs.rmSync(dirs[0], { recursive: true });
  const text = await freshReceipt("restoreCheckpoint", () => page.click("#btn-restore-go"));
  assert.match(text, /^restore checkpoint: (failed|rejected): .*\S/, text);
  assert.doesNotMatch(text, /UNKNOWN|Traceback/, text);
  assert.ok(await page.locator("#toast.error").isVisible(), "the page says so");
  const after = await status();
  assert.equal(Number(after.step), Number(before.step), "the run did not move");
  assert.equal(after.state, core.runPb.RunState.PAUSED);
});
