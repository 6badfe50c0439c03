// The messages between the extension host and the dashboard webview. Plain data (JSON-safe), shared
// by both sides; the host validates everything the webview sends with parseViewMessage.
import { parseLabRequest, type LabRequest, type LabResult } from "./labview.js";

/** Points appended to one series: x is the optimizer step (time in seconds for runtime/* series). */
export interface SeriesChunk {
  x: number[];
  y: number[];
}

export interface LogLine {
  seq: number;
  step: number;
  /** Seconds since the epoch. */
  time: number;
  /** 1 debug, 2 info, 3 warning, 4 error, 5 critical (the proto's LogLevel). */
  level: number;
  logger: string;
  message: string;
}

/** Distribution of per-sample losses over a window, with quantiles. */
export interface HistogramView {
  split: string;
  /** Step of the newest batch in the window. */
  step: number;
  /** Samples in the window. */
  n: number;
  lo: number;
  hi: number;
  counts: number[];
  mean: number;
  quantiles: { p05: number; p25: number; p50: number; p75: number; p95: number };
  /** Highest-loss samples in the window, by dataset index. */
  top: { index: number; loss: number }[];
}

export interface GpuView {
  index: number;
  name: string;
  utilizationPercent: number;
  memoryUsedBytes: number;
  memoryTotalBytes: number;
  torchAllocatedBytes: number;
}

export interface RuntimeView {
  time: number;
  cpuPercent: number;
  rssBytes: number;
  threads: number;
  gpus: GpuView[];
}

export interface StatusView {
  /** starting, running, paused, testing, finished, failed, unknown. */
  state: string;
  step: number;
  epoch: number;
  totalSteps: number;
  maxEpochs: number;
  lastLoss: number | null;
  samplesPerSecond: number;
  device: string;
  hyperparameters: { group: number; values: Record<string, number> }[];
  pendingSteps: number;
  error: string;
}

/** One steering command, from our own call's receipt or from the run's CommandApplied event (other clients). */
export interface ReceiptView {
  commandId: number;
  command: string;
  status: "applied" | "accepted" | "rejected" | "error";
  step: number;
  detail: string;
  /** Milliseconds since the epoch. */
  at: number;
  /** The one-line description shown to people. */
  text: string;
}

export interface GapView {
  first: number;
  last: number;
  reason: string;
}

export interface NotesView {
  /** Events the training thread dropped because its bus was full (run total). */
  droppedAtSource: number;
  /** Ranges of events that could not be recovered. */
  gaps: GapView[];
}

export interface ConnectionView {
  /** connecting, live, reconnecting, ended, failed, detached. */
  state: string;
  detail: string;
}

/** The health checks a trainer can run (the CLI's names, in the proto's order). */
export const HEALTH_CHECKS = ["numerics", "gradients", "activations", "throughput", "determinism", "configuration", "checkpoints"] as const;
export type HealthCheckName = (typeof HEALTH_CHECKS)[number];

/** One finding of a health check. */
export interface FindingView {
  /** The check's name (numerics, gradients, ...). */
  check: string;
  severity: "info" | "warning" | "error";
  message: string;
  /** What it is about (a parameter, layer, setting); empty for the run as a whole. */
  subject: string;
  /** The measured numbers behind it, keyed by what they measure. */
  evidence: Record<string, number>;
}

/** The outcome of one RunHealthCheck call. */
export interface HealthView {
  /** applied (findings below) / accepted (queued, not run before the deadline) / rejected / error (the call failed). */
  status: "applied" | "accepted" | "rejected" | "error";
  /** The checks asked for; empty means all. */
  checks: string[];
  /** The step at which the checks ran (applied only). */
  step: number;
  commandId: number;
  findings: FindingView[];
  /** How long the checks held the training loop. */
  heldSeconds: number;
  /** Why it was rejected or failed. */
  detail: string;
  /** Milliseconds since the epoch when the outcome was known. */
  at: number;
  /** The one-line summary shown to people. */
  text: string;
}

/** The health panel: the latest report, and whether a run of the checks is in flight (from any view or the palette). */
export interface HealthPanelView {
  running: boolean;
  report?: HealthView;
}

/** One checkpoint of the run's ring, as the restore picker lists it. */
export interface CheckpointView {
  id: string;
  step: number;
  epoch: number;
  /** request, pause, test, schedule or export. */
  reason: string;
  label: string;
  /** Milliseconds since the epoch. */
  createdAt: number;
  sizeBytes: number;
}

export interface RunView {
  runId: string;
  label: string;
  address: string;
}

/**
 * A change to the dashboard's model. With reset, it replaces everything the webview holds; otherwise
 * series and logs are appended and every other present field replaces the webview's copy.
 */
export interface Delta {
  gen: number;
  reset: boolean;
  /** The newest event seq folded in; the webview reports it back on reload. */
  lastSeq: number;
  run?: RunView;
  series: Record<string, SeriesChunk>;
  logs: LogLine[];
  /** Steps at which each epoch began (for the epoch axis). */
  epochStarts?: { epoch: number; step: number }[];
  histograms?: Record<string, HistogramView>;
  runtime?: RuntimeView;
  status?: StatusView;
  receipts?: ReceiptView[];
  notes?: NotesView;
  connection?: ConnectionView;
  health?: HealthPanelView;
  /** A new run of the same project, found after this one ended (the page offers to switch to it). */
  successor?: RunView;
}

export type HostToView =
  | { type: "delta"; delta: Delta }
  /** receipt is null when the person cancelled (e.g. closed the export's save dialog). */
  | { type: "commandDone"; id: number; receipt: ReceiptView | null }
  | { type: "healthDone"; id: number; report: HealthView }
  | { type: "exported"; name: string; path: string; error?: string }
  /** The steps of a zoomed range in detail (answers "zoom" with the same id); series is empty when the trainer cannot answer. */
  | { type: "zoomData"; id: number; min: number; max: number; series: Record<string, SeriesChunk> }
  /** A message for the person (e.g. a script started from the page exited before its run came up). */
  | { type: "toast"; text: string; error: boolean }
  /** Answers listCheckpoints: the ring, oldest first, or why it could not be read. */
  | { type: "checkpoints"; id: number; checkpoints: CheckpointView[]; error?: string }
  /** Answers a lab request: its result, or the trainer's refusal as a person reads it ("NOT_FOUND: ..."). */
  | { type: "labDone"; id: number; op: LabRequest["op"]; result?: LabResult; error?: string; cancelled?: boolean };

/**
 * Commands the page sends. exportSession and importSession have no value: the host asks for the file;
 * restoreCheckpoint names the checkpoint in `text`.
 */
export type ViewCommand = "pause" | "resume" | "stop" | "step" | "runTest" | "setLr" | "checkpoint" | "exportSession"
  | "restoreCheckpoint" | "importSession";

export type ViewToHost =
  /** Sent once the page listens; runId/gen/lastSeq describe what it restored from its saved state. */
  | { type: "ready"; runId: string; gen: number; lastSeq: number }
  | { type: "command"; id: number; command: ViewCommand; value?: number; text?: string }
  /** Asks for the run's checkpoints (the restore picker); answered with checkpoints. */
  | { type: "listCheckpoints"; id: number }
  | { type: "exportPng"; name: string; dataUrl: string }
  /** Runs the named health checks (all when empty); answered with healthDone. */
  | { type: "health"; id: number; checks: HealthCheckName[] }
  /** Attach to another run: the one named by runId (a successor the page offered), else the host asks which. */
  | { type: "attach"; runId?: string }
  /** Asks the host to start a training script in a terminal and attach to its run once it is up. */
  | { type: "runScript" }
  /** Asks for the named step series over [min, max] at up to `buckets` step buckets (a zoomed chart); answered with zoomData. */
  | { type: "zoom"; id: number; names: string[]; min: number; max: number; buckets: number }
  /** A Lab panel request (score, regions, a sample, export, fork, compare, ...); answered with labDone. */
  | { type: "lab"; id: number; request: LabRequest };

const COMMANDS: readonly string[] = ["pause", "resume", "stop", "step", "runTest", "setLr", "checkpoint", "exportSession",
  "restoreCheckpoint", "importSession"];
export const PNG_PREFIX = "data:image/png;base64,";

/** Validates a message from the webview; undefined for anything malformed. */
export function parseViewMessage(raw: unknown): ViewToHost | undefined {
  if (typeof raw !== "object" || raw === null) return undefined;
  const m = raw as Record<string, unknown>;
  const num = (v: unknown) => typeof v === "number" && Number.isFinite(v);
  switch (m.type) {
    case "ready":
      return {
        type: "ready",
        runId: typeof m.runId === "string" ? m.runId : "",
        gen: num(m.gen) ? (m.gen as number) : -1,
        lastSeq: num(m.lastSeq) && (m.lastSeq as number) >= 0 ? (m.lastSeq as number) : 0,
      };
    case "command":
      if (!num(m.id) || typeof m.command !== "string" || !COMMANDS.includes(m.command)) return undefined;
      if (m.value !== undefined && !num(m.value)) return undefined;
      if ((m.command === "setLr" || m.command === "step") && m.value === undefined) return undefined;
      if (m.text !== undefined && (typeof m.text !== "string" || m.text.length > 500)) return undefined;
      if (m.command === "restoreCheckpoint" && !m.text) return undefined;
      return {
        type: "command", id: m.id as number, command: m.command as ViewCommand, value: m.value as number | undefined,
        ...(m.command === "restoreCheckpoint" ? { text: m.text as string } : {}),
      };
    case "runScript":
      return { type: "runScript" };
    case "listCheckpoints":
      return num(m.id) ? { type: "listCheckpoints", id: m.id as number } : undefined;
    case "exportPng":
      if (typeof m.name !== "string" || typeof m.dataUrl !== "string" || !m.dataUrl.startsWith(PNG_PREFIX)) return undefined;
      return { type: "exportPng", name: m.name.replace(/[^\w.-]+/g, "_").slice(0, 80) || "chart", dataUrl: m.dataUrl };
    case "health": {
      if (!num(m.id) || !Array.isArray(m.checks)) return undefined;
      const checks = m.checks as unknown[];
      if (!checks.every((c) => typeof c === "string" && (HEALTH_CHECKS as readonly string[]).includes(c))) return undefined;
      return { type: "health", id: m.id as number, checks: [...new Set(checks as HealthCheckName[])] };
    }
    case "attach":
      if (m.runId !== undefined && (typeof m.runId !== "string" || m.runId.length > 300)) return undefined;
      return m.runId ? { type: "attach", runId: m.runId as string } : { type: "attach" };
    case "zoom": {
      if (!num(m.id) || !num(m.min) || !num(m.max) || !num(m.buckets) || !Array.isArray(m.names)) return undefined;
      const names = m.names as unknown[];
      if (names.length > 64 || !names.every((n) => typeof n === "string" && n.length > 0 && n.length <= 200)) return undefined;
      if ((m.max as number) < (m.min as number)) return undefined;
      const buckets = Math.max(1, Math.min(100_000, Math.round(m.buckets as number)));
      return { type: "zoom", id: m.id as number, names: [...new Set(names as string[])], min: m.min as number, max: m.max as number, buckets };
    }
    case "lab": {
      if (!num(m.id) || typeof m.request !== "object" || m.request === null) return undefined;
      const request = parseLabRequest(m.request as Record<string, unknown>);
      return request ? { type: "lab", id: m.id as number, request } : undefined;
    }
    default:
      return undefined;
  }
}

/** One run in the overlay: its series, or why it could not be read. */
export interface CompareRun {
  label: string;
  runId: string;
  /** live: a running trainer; session: a finished session in a session store; experiment: a tracked experiment. */
  kind?: "live" | "session" | "experiment";
  series: Record<string, SeriesChunk>;
  error?: string;
}

/** What the compare page draws: one chart per metric, one line per run. */
export interface CompareView {
  metrics: string[];
  runs: CompareRun[];
  /** Milliseconds since the epoch when it was read. */
  at: number;
}

/** The host's message to the compare page. */
export type CompareMessage = { type: "compare"; view: CompareView };
