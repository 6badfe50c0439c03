// One attached run: its client, the telemetry follower, a status poll and the store, and the
// webviews that show it. No `vscode` here: the extension and the tests drive it the same way.
import { ConnectError, RunClient, type CommandName, type CommandOutcome } from "./client.js";
import type { RunInfo, Target } from "./discovery.js";
import { listRuns, runLabel } from "./discovery.js";
import { successorOf } from "./successor.js";
import { delay, TelemetryFollower, type Connection } from "./follower.js";
import {
  parseViewMessage, PNG_PREFIX, type HealthCheckName, type HealthView, type HostToView, type ReceiptView, type RunView,
} from "./protocol.js";
import { RunStore, type StoreOptions } from "./store.js";
import { labError, runLab, type SliceFormatName } from "./lab.js";
import type { SeriesChunk } from "./protocol.js";
import { EventKind, type Event } from "../gen/onthefly/v1/telemetry_pb.js";

/** Step buckets of the history fetched on attach: about a wide chart's width in pixels. */
export const HISTORY_BUCKETS = 2000;
/** The longest a late attach reads the run's earlier log lines. */
const LOG_BACKFILL_MS = 2_000;

/** A webview (or a test's stand-in): something the session can post messages to. */
export interface ViewSink {
  post(message: HostToView): void | Thenable<boolean> | Promise<unknown>;
}

interface Thenable<T> {
  then<R>(onfulfilled?: (value: T) => R): Thenable<R>;
}

interface ViewCursor {
  gen: number;
  seq: number;
  version: number;
  /** True once the view said "ready": messages before that may be lost. */
  ready: boolean;
}

export interface SessionOptions extends StoreOptions {
  /** How often to poll GetStatus (ms). */
  statusIntervalMs?: number;
  /** Least time between two deltas to one view (ms): coalesces frames for the webview. */
  flushIntervalMs?: number;
  /** Reconnect delays (ms). */
  backoffMs?: number[];
  /** Handles an exported PNG (the extension shows a save dialog); returns the path written. */
  savePng?: (name: string, png: Uint8Array) => Promise<string | undefined>;
  /**
   * Asks where to write an exported session bundle (an absolute path on the trainer's machine; the
   * extension shows a save dialog); undefined cancels. `suggested` is a file name.
   */
  pickExportPath?: (suggested: string) => Promise<string | undefined>;
  /**
   * Asks which bundle to import (an absolute path on the trainer's machine; the extension shows an open
   * dialog); undefined cancels.
   */
  pickImportPath?: () => Promise<string | undefined>;
  /**
   * Writes an exported slice where the person picks (the extension shows a save dialog; the trainer never
   * writes it); returns the path written, undefined when cancelled. `suggested` is a file name.
   */
  saveSlice?: (suggested: string, format: SliceFormatName, data: Uint8Array) => Promise<string | undefined>;
  /** Called when a view asks to attach to another run: the one named (a successor it offered), else any. */
  onAttachRequest?: (runId?: string) => void;
  /** Called when a view asks to start a training script ("Run training script…"). */
  onRunScriptRequest?: () => void;
  /** The discovery directory to look for a successor in once the run ends; none: no looking. */
  discoveryDir?: () => string;
  /** Called once when a successor is found (the views offer it too); the extension may switch at once. */
  onSuccessor?: (run: RunInfo) => void;
  /** How often to look for a successor (ms). */
  successorPollMs?: number;
}

/** The target and name of the run to attach to. */
export interface SessionTarget extends Target {
  label: string;
  /** Expected run id (from the discovery file); empty if unknown (address typed by hand). */
  runId: string;
  /** The run's project and start (seconds since the epoch), when the discovery file said. */
  project?: string;
  startedAt?: number;
}

export function sessionTarget(info: RunInfo): SessionTarget {
  return {
    host: info.host, port: info.port, token: info.token, label: runLabel(info), runId: info.runId, project: info.project,
    startedAt: info.startedAt,
  };
}

export class RunSession {
  readonly store: RunStore;
  readonly client: RunClient;
  private readonly follower: TelemetryFollower;
  private readonly views = new Map<ViewSink, ViewCursor>();
  private readonly stopping = new AbortController();
  private flushTimer: ReturnType<typeof setTimeout> | undefined;
  private lastFlush = 0;
  private readonly opts: SessionOptions;
  private pollLoop?: Promise<void>;
  private started?: Promise<void>;
  private successorLoop?: Promise<void>;
  private project: string;
  private runId: string;

  constructor(readonly target: SessionTarget, options: SessionOptions = {}) {
    this.opts = options;
    this.runId = target.runId;
    this.project = target.project ?? "";
    this.store = new RunStore(options);
    this.store.reset(this.runView());
    this.client = new RunClient(target);
    this.follower = new TelemetryFollower(
      this.client,
      (frame) => {
        this.store.applyFrame(frame);
        if (this.store.takeRewound()) void this.rewind();
      },
      (c) => this.onConnection(c),
      { backoffMs: options.backoffMs, beforeReconnect: () => this.checkSameRun() },
    );
    this.store.onChange(() => this.scheduleFlush());
  }

  private runView(): RunView {
    return { runId: this.runId, label: this.target.label, address: `${this.target.host}:${this.target.port}` };
  }

  /**
   * Starts following telemetry and polling status: first the run's whole metric history (so a late
   * attach still shows step 1), then the stream from the seq the history ends at.
   */
  start(): void {
    this.started ??= this.backfill().then((after) => {
      void this.follower.start(after);
      if (after > 0n) void this.backfillLogs(after);
    });
    this.pollLoop ??= this.poll();
  }

  /** Resolves once the history is in and the stream has been started (for tests). */
  get backfilled(): Promise<void> {
    return this.started?.then(() => undefined) ?? Promise.resolve();
  }

  /**
   * Folds the run's metric history into the store; returns the seq to follow the stream after (0n:
   * from the oldest event the run still holds, when the trainer has no history to give).
   */
  private async backfill(): Promise<bigint> {
    try {
      const h = await this.client.metricHistory({ buckets: HISTORY_BUCKETS });
      this.store.applyHistory(h);
      return h.lastSeq;
    } catch {
      return 0n; // an older trainer or one without a session: the stream's bounded history is all there is
    }
  }

  /**
   * The log lines up to `until` that the run's bounded event history still holds (the stream follows
   * from after `until`). Reads for at most LOG_BACKFILL_MS: the stream does not say when a filtered
   * read has reached the live edge, so a run that logged nothing since `until` ends it by the clock.
   */
  private async backfillLogs(until: bigint): Promise<void> {
    const abort = new AbortController();
    const stop = () => abort.abort();
    this.stopping.signal.addEventListener("abort", stop, { once: true });
    const timer = setTimeout(stop, LOG_BACKFILL_MS);
    const events: Event[] = [];
    try {
      const frames = this.client.telemetry.subscribe({ afterSeq: 0n, kinds: [EventKind.LOG] }, { signal: abort.signal });
      for await (const frame of frames) {
        events.push(...frame.events.filter((e) => e.seq <= until));
        if (frame.events.some((e) => e.seq >= until)) break;
      }
    } catch {
      // Aborted by the clock or a dispose, or the run is gone: keep what was read.
    } finally {
      clearTimeout(timer);
      abort.abort();
      this.stopping.signal.removeEventListener("abort", stop);
    }
    if (!this.stopping.signal.aborted) this.store.addEarlierLogs(events);
  }

  /**
   * The steps in [min, max] at up to `buckets` per series (a zoomed chart): every step when the range
   * is narrow enough. Undefined when the trainer cannot answer.
   */
  async zoomHistory(names: string[], min: number, max: number, buckets: number): Promise<Record<string, SeriesChunk> | undefined> {
    try {
      return (await this.client.metricHistory({ names, startStep: Math.max(1, min), endStep: Math.max(1, max), buckets })).series;
    } catch {
      return undefined;
    }
  }

  /** The follower's connection state. */
  get connection(): Connection {
    return this.follower.connection;
  }

  /** Stops everything and closes the connection; views keep what they show. */
  async dispose(): Promise<void> {
    this.stopping.abort();
    clearTimeout(this.flushTimer);
    await this.follower.stop();
    await this.pollLoop;
    await this.successorLoop;
    this.client.close();
    this.views.clear();
  }

  private onConnection(c: Connection): void {
    this.store.setConnection(c);
    if (c.state === "live" || c.state === "ended") void this.refreshStatus();
    if (c.state === "ended") this.successorLoop ??= this.watchForSuccessor();
  }

  /** After the run ended: look in discovery for the run that carries on its project, until found or disposed. */
  private async watchForSuccessor(): Promise<void> {
    const dir = this.opts.discoveryDir;
    if (!dir) return;
    const signal = this.stopping.signal;
    while (!signal.aborted) {
      const ended = { project: this.project, runId: this.runId, startedAt: this.target.startedAt ?? 0 };
      let found: RunInfo | undefined;
      try {
        found = successorOf(ended, listRuns(dir()));
      } catch {
        found = undefined; // an unreadable directory now may be readable later
      }
      if (found) {
        this.store.setSuccessor({ runId: found.runId, label: runLabel(found), address: `${found.host}:${found.port}` });
        this.opts.onSuccessor?.(found);
        return;
      }
      await delay(this.opts.successorPollMs ?? 1000, signal);
    }
  }

  /**
   * Before a reconnect: if the address now serves a different run (the trainer was restarted on the
   * same port), start over from its first event instead of resuming after a seq of the old run.
   */
  private async checkSameRun(): Promise<bigint | undefined> {
    const st = await this.client.status(3_000);
    const id = st.identity?.runId ?? "";
    if (this.runId && id && id !== this.runId) {
      this.runId = id;
      this.store.reset(this.runView());
      return this.backfill();
    }
    return undefined;
  }

  private async refreshStatus(): Promise<void> {
    try {
      const st = await this.client.status(3_000);
      if (!this.project && st.identity?.project) this.project = st.identity.project;
      if (!this.runId && st.identity?.runId) {
        this.runId = st.identity.runId; // an address typed by hand: now we know which run it serves
        this.store.setRun(this.runView());
      }
      this.store.applyStatus(st);
    } catch {
      // Unreachable: the follower reports the connection state.
    }
  }

  private async poll(): Promise<void> {
    const every = this.opts.statusIntervalMs ?? 1000;
    const signal = this.stopping.signal;
    while (!signal.aborted) {
      await this.refreshStatus();
      const state = this.store.statusView.state;
      if (this.follower.connection.state === "ended" && (state === "finished" || state === "failed")) return;
      await delay(every, signal);
    }
  }

  // -- commands --------------------------------------------------------------------------------

  /** Sends a command; the receipt lands in the store (and so in every view) and is returned. */
  async command(command: CommandName, arg?: number | string): Promise<{ outcome: CommandOutcome; receipt: ReceiptView }> {
    const outcome = await this.client.command(command, arg);
    const receipt = this.store.addOutcome(outcome);
    void this.refreshStatus();
    if (outcome.status === "applied" && (command === "restoreCheckpoint" || command === "importSession")) await this.rewind();
    return { outcome, receipt };
  }

  /**
   * The run went back to an earlier state (a restore or an import, from here or another client): its
   * metric history is now the restored one, so the charts take it whole.
   */
  private async rewind(): Promise<void> {
    try {
      this.store.applyHistory(await this.client.metricHistory({ buckets: HISTORY_BUCKETS }), true);
    } catch {
      // No history to give: the charts keep what they have.
    }
  }

  /** Runs health checks (all when `checks` is empty); the report lands in the store (every view shows it) and is returned. */
  async health(checks: readonly HealthCheckName[] = []): Promise<HealthView> {
    this.store.healthStarted();
    const report = await this.client.health(checks); // never throws: a failed call is an "error" report
    this.store.setHealth(report);
    return report;
  }

  /** A file name for an exported bundle of this run: "<project>_<run>-step<N>.onthefly". */
  suggestedBundleName(): string {
    return `${this.target.label.replace(/[^\w.-]+/g, "_")}-step${this.store.statusView.step}.onthefly`;
  }

  // -- views -----------------------------------------------------------------------------------

  /** Registers a view; it gets data once it posts "ready". */
  addView(view: ViewSink): void {
    if (!this.views.has(view)) this.views.set(view, { gen: -1, seq: 0, version: 0, ready: false });
  }

  removeView(view: ViewSink): void {
    this.views.delete(view);
  }

  /** Handles a message from a view (validated here); returns a promise for tests to await. */
  async handleViewMessage(view: ViewSink, raw: unknown): Promise<void> {
    const msg = parseViewMessage(raw);
    if (!msg) return;
    switch (msg.type) {
      case "ready": {
        // A view that restored its saved state says what it holds; same run and gen: only the rest is sent.
        const same = msg.runId !== "" && msg.runId === this.runId && msg.gen === this.store.gen;
        this.views.set(view, { gen: same ? msg.gen : -1, seq: same ? msg.lastSeq : 0, version: 0, ready: true });
        this.flushView(view);
        return;
      }
      case "command": {
        let arg: number | string | undefined = msg.value;
        if (msg.command === "checkpoint") arg = undefined;
        if (msg.command === "restoreCheckpoint") arg = msg.text;
        if (msg.command === "importSession") {
          arg = await this.opts.pickImportPath?.();
          if (!arg) {
            await view.post({ type: "commandDone", id: msg.id, receipt: null });
            return;
          }
        }
        if (msg.command === "exportSession") {
          arg = await this.opts.pickExportPath?.(this.suggestedBundleName());
          if (!arg) {
            await view.post({ type: "commandDone", id: msg.id, receipt: null });
            return;
          }
        }
        const { receipt } = await this.command(msg.command, arg);
        await view.post({ type: "commandDone", id: msg.id, receipt });
        return;
      }
      case "health": {
        const report = await this.health(msg.checks);
        await view.post({ type: "healthDone", id: msg.id, report });
        return;
      }
      case "exportPng": {
        const png = Uint8Array.from(Buffer.from(msg.dataUrl.slice(PNG_PREFIX.length), "base64"));
        try {
          const path = (await this.opts.savePng?.(msg.name, png)) ?? "";
          await view.post({ type: "exported", name: msg.name, path });
        } catch (err) {
          await view.post({ type: "exported", name: msg.name, path: "", error: String((err as Error).message ?? err) });
        }
        return;
      }
      case "attach":
        this.opts.onAttachRequest?.(msg.runId);
        return;
      case "runScript":
        this.opts.onRunScriptRequest?.();
        return;
      case "listCheckpoints": {
        try {
          await view.post({ type: "checkpoints", id: msg.id, checkpoints: await this.client.listCheckpoints() });
        } catch (err) {
          const e = ConnectError.from(err);
          await view.post({ type: "checkpoints", id: msg.id, checkpoints: [], error: e.rawMessage || e.message });
        }
        return;
      }
      case "lab": {
        const op = msg.request.op;
        try {
          const result = await runLab(this.client, msg.request, this.opts.saveSlice);
          const cancelled = op === "export" && !result.exported?.path;
          await view.post({ type: "labDone", id: msg.id, op, result, ...(cancelled ? { cancelled } : {}) });
        } catch (err) {
          await view.post({ type: "labDone", id: msg.id, op, error: labError(err) });
        }
        return;
      }
      case "zoom": {
        const series = (await this.zoomHistory(msg.names, msg.min, msg.max, msg.buckets)) ?? {};
        await view.post({ type: "zoomData", id: msg.id, min: msg.min, max: msg.max, series });
        return;
      }
    }
  }

  private scheduleFlush(): void {
    if (this.flushTimer) return;
    const wait = Math.max(0, (this.opts.flushIntervalMs ?? 100) - (Date.now() - this.lastFlush));
    this.flushTimer = setTimeout(() => {
      this.flushTimer = undefined;
      this.lastFlush = Date.now();
      for (const view of this.views.keys()) this.flushView(view);
    }, wait);
  }

  private flushView(view: ViewSink): void {
    const cur = this.views.get(view);
    if (!cur?.ready) return;
    const delta = this.store.delta(cur.gen, cur.seq, cur.version);
    const empty = !delta.reset && delta.lastSeq === cur.seq && Object.keys(delta.series).length === 0 && delta.logs.length === 0 &&
      !delta.status && !delta.runtime && !delta.receipts && !delta.notes && !delta.connection && !delta.histograms &&
      !delta.run && !delta.epochStarts && !delta.health && !delta.successor;
    this.views.set(view, { gen: delta.gen, seq: delta.lastSeq, version: this.store.version, ready: true });
    if (!empty) void Promise.resolve(view.post({ type: "delta", delta })).catch(() => this.views.delete(view));
  }
}
