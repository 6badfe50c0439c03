// The overlay of chosen runs: each run's metric history (the trainer downsamples it), side by side
// on one step axis. Live runs only: each is asked over its own API.
import { RunClient } from "./client.js";
import type { SessionTarget } from "./session.js";
import type { CompareRun, CompareView } from "./protocol.js";

/** The chosen runs' `metrics` at about `buckets` points each; a run that cannot answer says why. */
export async function compareRuns(targets: SessionTarget[], metrics: string[] = ["loss", "val/loss"], buckets = 1500): Promise<CompareView> {
  const runs = await Promise.all(targets.map(async (t): Promise<CompareRun> => {
    const client = new RunClient(t);
    try {
      const h = await client.metricHistory({ names: metrics, buckets }, 15_000);
      return { label: t.label, runId: t.runId, series: h.series };
    } catch (err) {
      return { label: t.label, runId: t.runId, series: {}, error: String((err as { rawMessage?: string }).rawMessage ?? (err as Error).message ?? err) };
    } finally {
      client.close();
    }
  }));
  return { metrics, runs, at: Date.now() };
}
