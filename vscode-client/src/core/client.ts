// The typed gRPC client of one run: Connect's gRPC transport over HTTP/2 to the trainer's loopback
// port, with the run's bearer token on every call.
import { Code, ConnectError, createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { ControlService } from "../gen/onthefly/v1/control_pb.js";
import { DiagnosticsService, FindingSeverity, HealthCheck } from "../gen/onthefly/v1/diagnostics_pb.js";
import { HistoryService } from "../gen/onthefly/v1/history_pb.js";
import { LabService } from "../gen/onthefly/v1/lab_pb.js";
import { ResolutionService } from "../gen/onthefly/v1/lab_resolutions_pb.js";
import { ReceiptStatus, type Receipt } from "../gen/onthefly/v1/receipt_pb.js";
import type { RunStatus } from "../gen/onthefly/v1/run_pb.js";
import { CheckpointReason, SessionsService } from "../gen/onthefly/v1/sessions_pb.js";
import { TelemetryService, type SubscribeResponse } from "../gen/onthefly/v1/telemetry_pb.js";
import type { Target } from "./discovery.js";
import {
  HEALTH_CHECKS, type CheckpointView, type FindingView, type HealthCheckName, type HealthView, type SeriesChunk,
} from "./protocol.js";
import { bytes } from "./format.js";

/** A steering command the dashboard and the palette can send (answered with a receipt). */
export type CommandName = "pause" | "resume" | "stop" | "step" | "runTest" | "setLr" | "checkpoint" | "exportSession"
  | "restoreCheckpoint" | "importSession";

/** What became of one command: the receipt in plain terms, or the call's error. */
export interface CommandOutcome {
  command: CommandName;
  /** applied / accepted (still queued) / rejected by the trainer / error (the call failed). */
  status: "applied" | "accepted" | "rejected" | "error";
  /** Receipt's command id (0 when the call failed before one was issued). */
  commandId: number;
  /** The optimizer step at which the command took effect (applied only). */
  step: number;
  /** Why it was rejected or failed; what changed, when the trainer said so. */
  detail: string;
  /** Milliseconds since the epoch when the outcome was known. */
  at: number;
}

/** A metric-history query: series names (all when empty), a step range (0 = open end), a resolution. */
export interface HistoryQuery {
  names?: string[];
  startStep?: number;
  endStep?: number;
  /** Step buckets, about the chart's width in pixels (0 = the trainer's default). */
  buckets?: number;
}

/** The answer: series by name, where the telemetry stream continues, and the epochs' first steps. */
export interface MetricHistory {
  series: Record<string, SeriesChunk>;
  lastSeq: bigint;
  totalSteps: number;
  epochStarts: { epoch: number; step: number }[];
}

/** Default deadline for control calls: Pause/RunTest wait for the training thread, so allow a while. */
export const CONTROL_TIMEOUT_MS = 60_000;
/** Deadline for health checks and session exports: they run on the training thread and may take a while. */
export const LONG_COMMAND_TIMEOUT_MS = 180_000;

export class RunClient {
  readonly control: Client<typeof ControlService>;
  readonly telemetry: Client<typeof TelemetryService>;
  readonly diagnostics: Client<typeof DiagnosticsService>;
  readonly sessions: Client<typeof SessionsService>;
  readonly history: Client<typeof HistoryService>;
  readonly lab: Client<typeof LabService>;
  readonly resolutions: Client<typeof ResolutionService>;
  private readonly session: Http2SessionManager;

  constructor(readonly target: Target) {
    const baseUrl = `http://${target.host.includes(":") ? `[${target.host}]` : target.host}:${target.port}`;
    const auth: Interceptor = (next) => (req) => {
      req.header.set("authorization", `Bearer ${target.token}`);
      return next(req);
    };
    // Our own session manager, so that close() can drop the HTTP/2 connection at once.
    this.session = new Http2SessionManager(baseUrl, { pingIntervalMs: 10_000, pingTimeoutMs: 5_000, idleConnectionTimeoutMs: 60_000 });
    const transport = createGrpcTransport({ baseUrl, interceptors: [auth], sessionManager: this.session });
    this.control = createClient(ControlService, transport);
    this.telemetry = createClient(TelemetryService, transport);
    this.diagnostics = createClient(DiagnosticsService, transport);
    this.sessions = createClient(SessionsService, transport);
    this.history = createClient(HistoryService, transport);
    this.lab = createClient(LabService, transport);
    this.resolutions = createClient(ResolutionService, transport);
  }

  /**
   * The run's metric history over [startStep, endStep] (0 = open end), downsampled on the trainer to
   * `buckets` step buckets (min and max of each, so no spike is lost). Throws a ConnectError when the
   * trainer has none to give (FAILED_PRECONDITION: no session; UNIMPLEMENTED: an older trainer).
   */
  async metricHistory(query: HistoryQuery = {}, timeoutMs = 30_000): Promise<MetricHistory> {
    const res = await this.history.getMetricHistory({
      names: query.names ?? [], startStep: BigInt(Math.max(0, Math.floor(query.startStep ?? 0))),
      endStep: BigInt(Math.max(0, Math.ceil(query.endStep ?? 0))), buckets: Math.max(0, Math.min(100_000, Math.round(query.buckets ?? 0))),
    }, { timeoutMs });
    const series: Record<string, SeriesChunk> = {};
    for (const s of res.series) series[s.name] = { x: s.steps.map(Number), y: [...s.values] };
    return {
      series, lastSeq: res.lastSeq, totalSteps: Number(res.totalSteps),
      epochStarts: res.epochStarts.map((e) => ({ epoch: Number(e.epoch), step: Number(e.step) })),
    };
  }

  /** The run's status snapshot (never waits for the training thread). */
  async status(timeoutMs = 5_000): Promise<RunStatus> {
    const res = await this.control.getStatus({}, { timeoutMs });
    if (!res.status) throw new ConnectError("GetStatus returned no status", Code.Internal);
    return res.status;
  }

  /**
   * Telemetry frames after `afterSeq` until the run's final event or until `signal` aborts.
   * The iterator throws a ConnectError when the connection fails.
   */
  subscribe(afterSeq: bigint, signal: AbortSignal): AsyncIterable<SubscribeResponse> {
    return this.telemetry.subscribe({ afterSeq }, { signal });
  }

  /**
   * Sends one command and reports its receipt; never throws (a failed call is an "error" outcome).
   * `arg` is the step count (step), the learning rate (setLr), the label (checkpoint, optional) or
   * the bundle's absolute path on the trainer's machine (exportSession).
   */
  async command(command: CommandName, arg?: number | string, timeoutMs?: number): Promise<CommandOutcome> {
    const value = typeof arg === "number" ? arg : undefined;
    const text = typeof arg === "string" ? arg : "";
    const long = command === "exportSession" || command === "importSession" || command === "restoreCheckpoint";
    const opts = { timeoutMs: timeoutMs ?? (long ? LONG_COMMAND_TIMEOUT_MS : CONTROL_TIMEOUT_MS) };
    try {
      switch (command) {
        case "pause":
          return outcome(command, (await this.control.pause({}, opts)).receipt);
        case "resume":
          return outcome(command, (await this.control.resume({}, opts)).receipt);
        case "stop":
          return outcome(command, (await this.control.stop({ skipTest: false }, opts)).receipt);
        case "step": {
          const steps = BigInt(Math.max(1, Math.floor(value ?? 1)));
          return outcome(command, (await this.control.step({ steps }, opts)).receipt);
        }
        case "runTest": {
          const res = await this.control.runTest({ stayPaused: false }, opts);
          const r = res.result;
          const detail = r ? `${r.split} loss ${fmt(r.loss)} over ${r.samples} samples` +
            Object.entries(r.metrics).sort().map(([k, v]) => `, ${k} ${fmt(v)}`).join("") : "";
          return outcome(command, res.receipt, detail);
        }
        case "setLr": {
          if (value === undefined || !Number.isFinite(value)) throw new ConnectError("a learning rate must be a number", Code.InvalidArgument);
          const res = await this.control.setHyperparameters({ values: { lr: value } }, opts);
          return outcome(command, res.receipt, `lr=${value}`);
        }
        case "checkpoint": {
          const res = await this.sessions.createCheckpoint({ label: text }, opts);
          const c = res.checkpoint;
          return outcome(command, res.receipt, c ? `${c.checkpointId}, ${bytes(Number(c.sizeBytes))}` : "");
        }
        case "exportSession": {
          if (!text) throw new ConnectError("an export needs the bundle's path", Code.InvalidArgument);
          const res = await this.sessions.exportSession({ path: text, overwrite: true }, opts);
          const b = res.bundle;
          const detail = b ? `${b.path}, ${bytes(Number(b.sizeBytes))}, ${b.checkpointCount} checkpoint${b.checkpointCount === 1 ? "" : "s"}` : "";
          return outcome(command, res.receipt, detail);
        }
        case "restoreCheckpoint": {
          if (!text) throw new ConnectError("a restore needs the checkpoint's id (pick one from the list)", Code.InvalidArgument);
          const res = await this.sessions.restoreCheckpoint({ checkpointId: text }, opts);
          const c = res.checkpoint;
          return outcome(command, res.receipt, c ? `${c.checkpointId}, the state at step ${c.step}` : "");
        }
        case "importSession": {
          if (!text) throw new ConnectError("an import needs the bundle's path", Code.InvalidArgument);
          const res = await this.sessions.importSession({ path: text }, opts);
          const c = res.checkpoint;
          return outcome(command, res.receipt, c ? `${text}: continues from step ${c.step}` : text);
        }
      }
    } catch (err) {
      const e = ConnectError.from(err);
      return { command, status: "error", commandId: 0, step: 0, detail: e.rawMessage || e.message, at: Date.now() };
    }
  }

  /** The run's checkpoint ring, oldest first. Throws a ConnectError (e.g. FAILED_PRECONDITION: no session). */
  async listCheckpoints(timeoutMs = 10_000): Promise<CheckpointView[]> {
    const res = await this.sessions.listCheckpoints({}, { timeoutMs });
    return res.checkpoints.map((c) => ({
      id: c.checkpointId, step: Number(c.step), epoch: Number(c.epoch), reason: CHECKPOINT_REASONS[c.reason] ?? "",
      label: c.label, createdAt: c.createdUnix * 1000, sizeBytes: Number(c.sizeBytes),
    }));
  }

  /**
   * Runs health checks (all of them when `checks` is empty) at the trainer's next step boundary and
   * reports their findings; never throws (a failed call is an "error" report).
   */
  async health(checks: readonly HealthCheckName[] = [], timeoutMs = LONG_COMMAND_TIMEOUT_MS): Promise<HealthView> {
    const base = { checks: [...checks], at: 0, findings: [] as FindingView[], heldSeconds: 0, step: 0, commandId: 0, detail: "" };
    let report: Omit<HealthView, "text">;
    try {
      const res = await this.diagnostics.runHealthCheck({ checks: checks.map((c) => HEALTH_CHECK_ENUM[c]) }, { timeoutMs });
      const r = res.receipt;
      const status = r?.status === ReceiptStatus.APPLIED ? "applied" : r?.status === ReceiptStatus.ACCEPTED ? "accepted"
        : r?.status === ReceiptStatus.REJECTED ? "rejected" : "error";
      report = {
        ...base, status, step: Number(r?.appliedStep ?? 0n), commandId: Number(r?.commandId ?? 0n), heldSeconds: res.heldSeconds,
        detail: status === "rejected" ? r!.reason : status === "error" ? "the trainer sent no receipt" : "",
        findings: res.findings.map((f) => ({
          check: checkName(f.check), severity: SEVERITY_NAMES[f.severity] ?? "info", message: f.message, subject: f.subject,
          evidence: { ...f.evidence },
        })),
      };
    } catch (err) {
      const e = ConnectError.from(err);
      report = { ...base, status: "error", detail: e.rawMessage || e.message };
    }
    report.at = Date.now();
    return { ...report, text: describeHealth(report) };
  }

  /** Drops the connection; open calls fail with Canceled/Unavailable. */
  close(): void {
    this.session.abort();
  }
}

function outcome(command: CommandName, receipt: Receipt | undefined, detail = ""): CommandOutcome {
  const base = { command, commandId: Number(receipt?.commandId ?? 0n), step: Number(receipt?.appliedStep ?? 0n), at: Date.now() };
  switch (receipt?.status) {
    case ReceiptStatus.APPLIED:
      return { ...base, status: "applied", detail };
    case ReceiptStatus.ACCEPTED:
      return { ...base, status: "accepted", detail };
    case ReceiptStatus.REJECTED:
      return { ...base, status: "rejected", detail: receipt.reason };
    default:
      return { ...base, status: "error", detail: "the trainer sent no receipt" };
  }
}

const CHECKPOINT_REASONS: Record<number, string> = {
  [CheckpointReason.REQUEST]: "request", [CheckpointReason.PAUSE]: "pause", [CheckpointReason.TEST]: "test",
  [CheckpointReason.SCHEDULE]: "schedule", [CheckpointReason.EXPORT]: "export",
};

const HEALTH_CHECK_ENUM: Record<HealthCheckName, HealthCheck> = {
  numerics: HealthCheck.NUMERICS, gradients: HealthCheck.GRADIENTS, activations: HealthCheck.ACTIVATIONS,
  throughput: HealthCheck.THROUGHPUT, determinism: HealthCheck.DETERMINISM, configuration: HealthCheck.CONFIGURATION,
  checkpoints: HealthCheck.CHECKPOINTS,
};

function checkName(c: HealthCheck): string {
  return HEALTH_CHECKS.find((n) => HEALTH_CHECK_ENUM[n] === c) ?? `check ${c}`;
}

const SEVERITY_NAMES: Record<number, FindingView["severity"]> = {
  [FindingSeverity.INFO]: "info", [FindingSeverity.WARNING]: "warning", [FindingSeverity.ERROR]: "error",
};

/** One line for a person: "health at step 812: 1 error, 2 warnings (held the loop 0.05 s)". */
export function describeHealth(h: Pick<HealthView, "status" | "step" | "findings" | "heldSeconds" | "detail" | "commandId">): string {
  switch (h.status) {
    case "applied": {
      const n = (sev: string) => h.findings.filter((f) => f.severity === sev).length;
      const plural = (k: number, word: string) => `${k} ${word}${k === 1 ? "" : "s"}`;
      return `health at step ${h.step}: ${plural(n("error"), "error")}, ${plural(n("warning"), "warning")}, ` +
        `${plural(n("info"), "note")} (held the loop ${h.heldSeconds.toFixed(2)} s)`;
    }
    case "accepted":
      return `health checks: queued as command #${h.commandId} but not run before the deadline (is a step very long?)`;
    case "rejected":
      return `health checks: rejected: ${h.detail}`;
    default:
      return `health checks: failed: ${h.detail}`;
  }
}

/** One line for a person: "pause: applied at step 812". */
export function describeOutcome(o: Pick<CommandOutcome, "command" | "status" | "step" | "detail" | "commandId">): string {
  const name = COMMAND_LABELS[o.command] ?? o.command;
  switch (o.status) {
    case "applied":
      return `${name}: applied at step ${o.step}${o.detail ? ` (${o.detail})` : ""}`;
    case "accepted":
      return `${name}: accepted (queued as command #${o.commandId}; not applied yet)`;
    case "rejected":
      return `${name}: rejected: ${o.detail}`;
    default:
      return `${name}: failed: ${o.detail}`;
  }
}

export const COMMAND_LABELS: Record<string, string> = {
  pause: "pause", resume: "resume", stop: "stop", step: "step", runTest: "run test", setLr: "set learning rate",
  checkpoint: "checkpoint", exportSession: "export session", restoreCheckpoint: "restore checkpoint", importSession: "import session",
  set_hyperparameters: "set hyperparameters", run_test: "run test", export: "export session", import: "import session",
  restore: "restore checkpoint", health_check: "health checks", test: "run test",
};

function fmt(v: number): string {
  return Number.isFinite(v) ? Number(v.toPrecision(5)).toString() : String(v);
}

/** True for errors a reconnect may cure (server gone or restarting), false for ones it will not. */
export function isRetryable(err: unknown): boolean {
  const code = ConnectError.from(err).code;
  return code !== Code.Unauthenticated && code !== Code.PermissionDenied && code !== Code.InvalidArgument &&
    code !== Code.Unimplemented;
}

export { ConnectError, Code };
