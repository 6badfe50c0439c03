// Finding running trainers: each one writes <pid>-<port>.json (mode 0600) into the runtime dir and
// removes it at exit. The directory rule is the trainer's own (onthefly/server/discovery.py).
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

/** One running trainer, as its discovery file describes it. */
export interface RunInfo {
  host: string;
  port: number;
  pid: number;
  token: string;
  project: string;
  runName: string;
  runId: string;
  /** Seconds since the epoch. */
  startedAt: number;
  /** The discovery file this came from; empty for an address typed by hand. */
  file: string;
}

/** Where to reach a run: loopback address and the run's token. */
export interface Target {
  host: string;
  port: number;
  token: string;
}

const FILE_NAME = /^(\d+)-(\d+)\.json$/;

/**
 * The discovery directory: `override` if non-empty, else $ONTHEFLY_RUNTIME_DIR, else
 * $XDG_RUNTIME_DIR/onthefly, else ~/.onthefly/run.
 */
export function runtimeDir(env: NodeJS.ProcessEnv = process.env, override = "", home = os.homedir()): string {
  if (override) return override;
  if (env.ONTHEFLY_RUNTIME_DIR) return env.ONTHEFLY_RUNTIME_DIR;
  if (env.XDG_RUNTIME_DIR) return path.join(env.XDG_RUNTIME_DIR, "onthefly");
  return path.join(home, ".onthefly", "run");
}

/** True if a process with this pid exists (EPERM means it exists but is not ours). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Parses one discovery file's JSON; undefined when a required key is missing or mistyped. */
export function parseDiscovery(text: string, file = ""): RunInfo | undefined {
  let data: Record<string, unknown>;
  try {
    data = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof data !== "object" || data === null) return undefined;
  const { port, pid, token } = data;
  if (typeof port !== "number" || typeof pid !== "number" || typeof token !== "string") return undefined;
  const str = (v: unknown) => (typeof v === "string" ? v : "");
  return {
    host: str(data.host) || "127.0.0.1",
    port,
    pid,
    token,
    project: str(data.project),
    runName: str(data.run_name),
    runId: str(data.run_id),
    startedAt: typeof data.started_at === "number" ? data.started_at : 0,
    file,
  };
}

/**
 * Running trainers in `dir`, newest first. Files of dead processes and unreadable files are skipped
 * (never deleted: they belong to the trainers).
 */
export function listRuns(dir: string, isAlive: (pid: number) => boolean = pidAlive): RunInfo[] {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return [];
  }
  const runs: RunInfo[] = [];
  for (const name of names) {
    if (!FILE_NAME.test(name)) continue;
    const file = path.join(dir, name);
    let text: string;
    try {
      text = fs.readFileSync(file, "utf8");
    } catch {
      continue;
    }
    const info = parseDiscovery(text, file);
    if (info && isAlive(info.pid)) runs.push(info);
  }
  return runs.sort((a, b) => b.startedAt - a.startedAt);
}

/**
 * Parses "host:port", "[::1]:port", "port" or "http://host:port" into host and port; throws an Error
 * with a message a person can act on.
 */
export function parseAddress(text: string): { host: string; port: number } {
  let rest = text.trim().replace(/^(https?|grpc):\/\//, "").replace(/\/+$/, "");
  let host = "127.0.0.1";
  if (/^\d+$/.test(rest)) rest = `${host}:${rest}`;
  const m = /^(\[[^\]]+\]|[^:\s]+):(\d+)$/.exec(rest);
  if (!m) throw new Error(`'${text}' is not an address: use HOST:PORT, e.g. 127.0.0.1:47621`);
  host = m[1].replace(/^\[|\]$/g, "");
  const port = Number(m[2]);
  if (port < 1 || port > 65535) throw new Error(`port ${port} is out of range (1-65535)`);
  return { host, port };
}

/** The run whose discovery file names this port on a loopback host, if any (so a typed address needs no token). */
export function runAtAddress(runs: RunInfo[], host: string, port: number): RunInfo | undefined {
  const loopback = (h: string) => h === "127.0.0.1" || h === "localhost" || h === "::1";
  return runs.find((r) => r.port === port && (r.host === host || (loopback(r.host) && loopback(host))));
}

/** "project/run_name", the name people use for a run. */
export function runLabel(run: Pick<RunInfo, "project" | "runName">): string {
  return `${run.project || "?"}/${run.runName || "?"}`;
}
