// Following the work: when the attached run ends, the run that carries it on is the newest running
// trainer of the same project that started after it (the user ran the script again).
import type { RunInfo } from "./discovery.js";

/** What is known of the run that ended. */
export interface EndedRun {
  project: string;
  runId: string;
  /** Seconds since the epoch; 0 when unknown (an address typed by hand). */
  startedAt: number;
}

/** The newest of `runs` (discovery order: newest first) that carries on `ended`'s project; undefined if none. */
export function successorOf(ended: EndedRun, runs: RunInfo[]): RunInfo | undefined {
  if (!ended.project) return undefined;
  return runs.find((r) => r.project === ended.project && r.runId !== ended.runId && r.startedAt >= ended.startedAt);
}
