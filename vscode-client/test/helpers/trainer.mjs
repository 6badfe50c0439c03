// Starts a real Python fixture trainer (test/fixtures/trainer.py, or `script`) in its own discovery dir.
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { core, PYTHON, REPO_ROOT, VSC_ROOT, waitFor } from "./util.mjs";

/**
 * Spawns the fixture with ONTHEFLY_RUNTIME_DIR (and ONTHEFLY_STORE under it) set to a fresh temp dir and waits for its discovery
 * file. Returns { dir, info, proc, output(), stop() }; stop() ends it (SIGTERM, then SIGKILL) and
 * removes the dir.
 */
export async function startTrainer(env = {}, { timeout = 90_000, dir: shared, script = "trainer.py" } = {}) {
  if (!fs.existsSync(PYTHON)) throw new Error(`no Python venv at ${PYTHON}: run scripts/bootstrap.sh (or make -C vscode-client deps)`);
  // `dir`: another trainer's dir (a second run of the same project, found through the same discovery dir); not removed by stop().
  const dir = shared ?? fs.mkdtempSync(path.join(os.tmpdir(), "otf-rt-"));
  let output = "";
  const proc = spawn(PYTHON, [path.join(VSC_ROOT, "test/fixtures", script)], {
    cwd: REPO_ROOT,
    // Its own discovery dir and session store (checkpoints, exports), both removed by stop().
    // PYTHONPATH: this checkout's package, whichever checkout the shared venv was installed from.
    env: {
      ...process.env, ONTHEFLY_RUNTIME_DIR: dir, ONTHEFLY_STORE: path.join(dir, "store"), PYTHONUNBUFFERED: "1",
      PYTHONPATH: [REPO_ROOT, process.env.PYTHONPATH].filter(Boolean).join(path.delimiter), ...env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  proc.stdout.on("data", (d) => (output += d));
  proc.stderr.on("data", (d) => (output += d));
  const exited = new Promise((resolve) => proc.on("exit", (code, signal) => resolve({ code, signal })));
  let info;
  try {
    info = await waitFor(() => {
      if (proc.exitCode !== null) throw new Error(`the fixture trainer exited (${proc.exitCode}): ${output.slice(-2000)}`);
      return core.listRuns(dir).find((r) => r.pid === proc.pid);
    }, { timeout, what: "the fixture trainer's discovery file" });
  } catch (err) {
    proc.kill("SIGKILL");
    throw err;
  }
  return {
    dir, info, proc, exited,
    output: () => output,
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill("SIGTERM");
        const timer = setTimeout(() => proc.kill("SIGKILL"), 5_000);
        await exited;
        clearTimeout(timer);
      }
      if (!shared) fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Runs the fixture trainer to its end (`steps` steps) in `dir` with its own session store (dir/store) and
 * a tracked experiment (local tracking store dir/dash); resolves with its output once it exited 0.
 */
export async function runTrainerToEnd(dir, steps, env = {}) {
  let output = "";
  const proc = spawn(PYTHON, [path.join(VSC_ROOT, "test/fixtures/trainer.py")], {
    cwd: REPO_ROOT, stdio: ["ignore", "pipe", "pipe"],
    env: {
      ...process.env, ONTHEFLY_RUNTIME_DIR: dir, ONTHEFLY_STORE: path.join(dir, "store"), FIXTURE_TRACK: path.join(dir, "dash"),
      FIXTURE_MAX_STEPS: String(steps), PYTHONUNBUFFERED: "1",
      PYTHONPATH: [REPO_ROOT, process.env.PYTHONPATH].filter(Boolean).join(path.delimiter), ...env,
    },
  });
  proc.stdout.on("data", (d) => (output += d));
  proc.stderr.on("data", (d) => (output += d));
  const code = await new Promise((resolve) => proc.on("exit", resolve));
  if (code !== 0) throw new Error(`the fixture trainer run to its end exited ${code}: ${output.slice(-2000)}`);
  return output;
}
