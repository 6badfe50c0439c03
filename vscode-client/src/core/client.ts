// The typed gRPC client of one run: Connect's gRPC transport over HTTP/2 to the trainer's loopback
// port, with the run's bearer token on every call.
import { Code, ConnectError, createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { ControlService } from "../gen/onthefly/v1/control_pb.js";
import { ReceiptStatus, type Receipt } from "../gen/onthefly/v1/receipt_pb.js";
import type { RunStatus } from "../gen/onthefly/v1/run_pb.js";
import { TelemetryService, type SubscribeResponse } from "../gen/onthefly/v1/telemetry_pb.js";
import type { Target } from "./discovery.js";

/** A steering command the dashboard and the palette can send. */
export type CommandName = "pause" | "resume" | "stop" | "step" | "runTest" | "setLr";

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

/** Default deadline for control calls: Pause/RunTest wait for the training thread, so allow a while. */
export const CONTROL_TIMEOUT_MS = 60_000;

export class RunClient {
  readonly control: Client<typeof ControlService>;
  readonly telemetry: Client<typeof TelemetryService>;
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

  /** Sends one command and reports its receipt; never throws (a failed call is an "error" outcome). */
  async command(command: CommandName, value?: number, timeoutMs = CONTROL_TIMEOUT_MS): Promise<CommandOutcome> {
    const opts = { timeoutMs };
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
      }
    } catch (err) {
      const e = ConnectError.from(err);
      return { command, status: "error", commandId: 0, step: 0, detail: e.rawMessage || e.message, at: Date.now() };
    }
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
  set_hyperparameters: "set hyperparameters", run_test: "run test",
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
