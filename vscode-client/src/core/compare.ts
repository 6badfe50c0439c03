// The overlay of chosen runs: each run's metric history downsampled to the chart's pixels, side by side
// on one step axis. A live run is asked over its own API (its HistoryService); a finished session or a
// tracked experiment is read from the stores on disk by the `onthefly stored` CLI (./stored.ts), so the
// overlay needs no live run at all.
import { RunClient } from "./client.js";
import type { SessionTarget } from "./session.js";
import type { CompareRun, CompareView } from "./protocol.js";
import { readStored, storedIsLive, storedLabel, type StoredReader, type StoredRun, type StoredSeries } from "./stored.js";

/** One run to overlay: a running trainer, or a stored session / experiment. */
export type CompareSource = { kind: "live"; target: SessionTarget } | { kind: "stored"; run: StoredRun };

function errorText(err: unknown): string {
  return String((err as { rawMessage?: string }).rawMessage ?? (err as Error).message ?? err);
}

async function readLive(t: SessionTarget, metrics: string[], buckets: number): Promise<CompareRun> {
  const client = new RunClient(t);
  try {
    const h = await client.metricHistory({ names: metrics, buckets }, 15_000);
    return { label: t.label, runId: t.runId, kind: "live", series: h.series };
  } catch (err) {
    return { label: t.label, runId: t.runId, kind: "live", series: {}, error: errorText(err) };
  } finally {
    client.close();
  }
}

/**
 * The chosen sources' `metrics` at about `buckets` points each, in the order given; a source that
 * cannot be read says why. `reader` is needed only when stored sources are among them.
 */
export async function compareSources(sources: CompareSource[], metrics: string[] = ["loss", "val/loss"], buckets = 1500,
  reader?: StoredReader, cache?: Map<string, StoredSeries>): Promise<CompareView> {
  const stored = sources.flatMap((s) => (s.kind === "stored" ? [s.run] : []));
  const key = (run: StoredRun) => `${run.kind}\0${run.where}\0${run.id}\0${metrics.join(",")}\0${buckets}`;
  // A run that has ended does not change: read it once per overlay (`cache`), re-read only running ones.
  const toRead = stored.filter((run) => !cache?.has(key(run)));
  const read = toRead.length
    ? reader
      ? readStored(reader, toRead, metrics, buckets)
      : Promise.resolve(toRead.map((run): StoredSeries => ({ kind: run.kind, id: run.id, label: storedLabel(run), series: {}, error: "no Python interpreter to read the stores with" })))
    : Promise.resolve([] as StoredSeries[]);
  const storedAnswers = read.then((answers) => {
    answers.forEach((a, i) => {
      if (cache && !a.error && !storedIsLive(toRead[i])) cache.set(key(toRead[i]), a);
    });
    const fresh = new Map(toRead.map((run, i) => [key(run), answers[i]]));
    return stored.map((run) => fresh.get(key(run)) ?? cache!.get(key(run))!);
  });
  const [live, fromDisk] = await Promise.all([
    Promise.all(sources.flatMap((s) => (s.kind === "live" ? [readLive(s.target, metrics, buckets)] : []))),
    storedAnswers,
  ]);
  let li = 0;
  let si = 0;
  const runs = sources.map((s): CompareRun => {
    if (s.kind === "live") return live[li++];
    const a = fromDisk[si++];
    return { label: storedLabel(s.run), runId: s.run.runId ?? "", kind: s.run.kind, series: a.series, ...(a.error ? { error: a.error } : {}) };
  });
  return { metrics, runs, at: Date.now() };
}

/** The chosen running trainers' `metrics` at about `buckets` points each; a run that cannot answer says why. */
export async function compareRuns(targets: SessionTarget[], metrics: string[] = ["loss", "val/loss"], buckets = 1500): Promise<CompareView> {
  return compareSources(targets.map((target) => ({ kind: "live", target })), metrics, buckets);
}
