// "Run training script…": after starting a script, wait for the run it hosts to come up (its discovery
// file, written by the process we started) or for the process to end first (a script that fails at
// once), so the dashboard attaches to the right run or says why there is none.
import { delay } from "./follower.js";
import { listRuns, type RunInfo } from "./discovery.js";

export type LaunchOutcome =
  | { kind: "up"; run: RunInfo }
  | { kind: "exited"; code: number | undefined }
  | { kind: "timeout" }
  | { kind: "cancelled" };

export interface LaunchWatch {
  /** The discovery directory the trainer writes to. */
  dir: string;
  /** The started process's pid once known (the terminal's process is the interpreter itself). */
  pid: () => Promise<number | undefined> | number | undefined;
  /** The process's exit code once it has ended (null while it runs; undefined code if unknown). */
  exited: () => { code: number | undefined } | null;
  timeoutMs?: number;
  pollMs?: number;
  signal?: AbortSignal;
}

/** Polls until the started process's run is up, the process ended, the deadline passed or `signal` aborted. */
export async function waitForLaunchedRun(w: LaunchWatch): Promise<LaunchOutcome> {
  const deadline = Date.now() + (w.timeoutMs ?? 120_000);
  for (;;) {
    if (w.signal?.aborted) return { kind: "cancelled" };
    const pid = await w.pid();
    const run = pid ? listRuns(w.dir).find((r) => r.pid === pid) : undefined;
    if (run) return { kind: "up", run };
    const ended = w.exited();
    if (ended) return { kind: "exited", code: ended.code };
    if (Date.now() > deadline) return { kind: "timeout" };
    await delay(w.pollMs ?? 300, w.signal);
  }
}
