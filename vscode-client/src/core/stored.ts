// Finished runs on disk, read without a live run: `onthefly stored list | series` (onthefly/cli/stored_cmds.py)
// spawned with the chosen interpreter, which reads the session store and the local tracking store and
// downsamples each series to the chart's pixels before it answers.
import { spawn } from "node:child_process";
import type { SeriesChunk } from "./protocol.js";

/** How to run the reader: the interpreter with onthefly installed, the folder the stores' defaults are relative to. */
export interface StoredReader {
  python: string;
  cwd: string;
  /** Session stores to look in (empty: the CLI's default, $ONTHEFLY_STORE or <cwd>/.onthefly). */
  stores?: string[];
  /** Local tracking stores to look in (empty: $ONTHEFLY_DASH_ROOT or <cwd>/.dash). */
  trackingRoots?: string[];
  env?: NodeJS.ProcessEnv;
  timeoutMs?: number;
}

/** A finished (or killed) session in a session store, or an experiment in a local tracking store. */
export interface StoredRun {
  kind: "session" | "experiment";
  /** A session id, or an experiment's prefix. */
  id: string;
  /** finished / failed / killed / running (sessions); running / completed / failed / cancelled (experiments). */
  state: string;
  /** The store (sessions) or tracking root (experiments) it lives in. */
  where: string;
  project?: string;
  runName?: string;
  runId?: string;
  lastStep?: number;
  /** Seconds since the epoch: a session's start, an experiment's last update. */
  when?: number;
  /** An experiment still marked running whose writing process has ended (killed). */
  processGone?: boolean;
}

/** Whether a stored run may still change (its process is still writing it). */
export function storedIsLive(s: StoredRun): boolean {
  return s.state === "running" && !s.processGone;
}

export interface StoredSeries {
  kind: "session" | "experiment";
  id: string;
  label: string;
  series: Record<string, SeriesChunk>;
  error?: string;
}

/** Runs `python -m onthefly.cli.main stored ARGS`; resolves with stdout, or rejects with the CLI's own message. */
async function runCli(r: StoredReader, args: string[], okCodes = [0]): Promise<{ out: string; err: string }> {
  return new Promise((resolve, reject) => {
    const proc = spawn(r.python, ["-m", "onthefly.cli.main", "stored", ...args], {
      cwd: r.cwd, env: r.env ?? process.env, stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    proc.stdout.on("data", (d) => (out += d));
    proc.stderr.on("data", (d) => (err += d));
    const timer = setTimeout(() => proc.kill("SIGKILL"), r.timeoutMs ?? 120_000);
    proc.on("error", (e) => {
      clearTimeout(timer);
      reject(new Error(`cannot run ${r.python} to read the stores (${e.message}); set onthefly.pythonPath to the interpreter that has onthefly`));
    });
    proc.on("close", (code, signal) => {
      clearTimeout(timer);
      const last = lastLine(err);
      if (code !== null && okCodes.includes(code)) return resolve({ out, err: last });
      if (/No module named '?onthefly/.test(err)) {
        return reject(new Error(`${r.python} has no onthefly package: set onthefly.pythonPath (or pick the Python extension's interpreter) to the environment you train in`));
      }
      reject(new Error(signal ? `reading the stores took too long (${r.python} was stopped)` : last || `${r.python} exited with ${code}`));
    });
  });
}

function lastLine(text: string): string {
  return (text.trim().split("\n").pop() ?? "").replace(/^onthefly: /, "");
}

function sourceArgs(r: StoredReader): string[] {
  return [...(r.stores ?? []).flatMap((s) => ["--store", s]), ...(r.trackingRoots ?? []).flatMap((t) => ["--tracking", t])];
}

/** Sessions in the stores and experiments in the tracking stores, oldest session first. */
export async function listStored(r: StoredReader): Promise<StoredRun[]> {
  const { out } = await runCli(r, ["list", "--json", ...sourceArgs(r)]);
  return out.split("\n").filter((l) => l.trim()).map((line) => {
    const row = JSON.parse(line) as Record<string, unknown>;
    const kind = row.kind === "experiment" ? "experiment" : "session";
    return {
      kind, id: String(row.id), state: String(row.state ?? ""), where: String(kind === "session" ? row.store : row.root),
      project: row.project as string | undefined, runName: row.run_name as string | undefined, runId: row.run_id as string | undefined,
      lastStep: row.last_step as number | undefined, when: (kind === "session" ? row.started_at : row.updated_at) as number | undefined,
      processGone: row.process_gone === true,
    };
  });
}

/** A label for a stored run in pickers and legends. */
export function storedLabel(s: StoredRun): string {
  if (s.kind === "experiment") return s.id;
  const name = [s.project, s.runName].filter(Boolean).join("/");
  return name ? `${name} (${s.id})` : s.id;
}

/**
 * The `metrics` of the chosen stored runs at about `buckets` pixels, one CLI call per store (sessions)
 * or tracking root (experiments); a run that cannot be read carries why.
 */
export async function readStored(r: StoredReader, runs: StoredRun[], metrics: string[], buckets: number): Promise<StoredSeries[]> {
  const groups = new Map<string, StoredRun[]>();
  for (const s of runs) {
    const key = `${s.kind}\0${s.where}`;
    groups.set(key, [...(groups.get(key) ?? []), s]);
  }
  const answers = await Promise.all([...groups.values()].map(async (group) => {
    const { kind, where } = group[0];
    const args = ["series", "--json", "--buckets", String(buckets), ...metrics.flatMap((m) => ["--metric", m]),
      ...(kind === "session" ? ["--store", where] : ["--tracking", where]),
      ...group.flatMap((s) => [kind === "session" ? "--session" : "--experiment", s.id])];
    try {
      // Exit 1 with a JSON answer: some runs could not be read; each carries why.
      const { out, err } = await runCli(r, args, [0, 1]);
      let body: { sources: StoredSeries[] };
      try {
        body = JSON.parse(out);
      } catch {
        throw new Error(err || "the reader answered something that is not JSON");
      }
      return body.sources.map((a) => ({ ...a, series: a.series ?? {} })); // a run the CLI could not read has none
    } catch (err) {
      return group.map((s): StoredSeries => ({ kind, id: s.id, label: storedLabel(s), series: {}, error: (err as Error).message }));
    }
  }));
  const byKey = new Map(answers.flat().map((a) => [`${a.kind}\0${a.id}`, a]));
  return runs.map((s) => byKey.get(`${s.kind}\0${s.id}`) ?? { kind: s.kind, id: s.id, label: storedLabel(s), series: {}, error: "not answered" });
}
