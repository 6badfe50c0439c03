// waitForLaunchedRun against real processes: a trainer that comes up, a script that exits at once.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { core, PYTHON, REPO_ROOT, VSC_ROOT } from "../helpers/util.mjs";

function launch(args, dir) {
  const proc = spawn(PYTHON, args, {
    cwd: REPO_ROOT, stdio: "ignore",
    env: { ...process.env, ONTHEFLY_RUNTIME_DIR: dir, ONTHEFLY_STORE: path.join(dir, "store"), PYTHONPATH: REPO_ROOT },
  });
  let ended = null;
  proc.on("exit", (code) => (ended = { code: code ?? undefined }));
  return { proc, watch: { dir, pid: () => proc.pid, exited: () => ended, timeoutMs: 120_000, pollMs: 100 } };
}

test("the run the started process hosts is found by its pid", async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "otf-launch-"));
  const { proc, watch } = launch([path.join(VSC_ROOT, "test/fixtures/trainer.py")], dir);
  try {
    const outcome = await core.waitForLaunchedRun(watch);
    assert.equal(outcome.kind, "up");
    assert.equal(outcome.run.pid, proc.pid);
    assert.equal(outcome.run.project, "vscode-tests");
  } finally {
    proc.kill("SIGKILL");
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("a script that exits at once is reported with its exit code, not waited for", async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "otf-launch-"));
  const { watch } = launch(["-c", "raise SystemExit(3)"], dir);
  try {
    assert.deepEqual(await core.waitForLaunchedRun(watch), { kind: "exited", code: 3 });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
