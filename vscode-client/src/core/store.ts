// The dashboard's model of one run, folded from telemetry frames, status snapshots and our own
// command receipts. It answers "what changed since seq S / version V" so that one mechanism serves
// live updates and a reloaded webview that restored its own saved state.
import type { CommandOutcome } from "./client.js";
import { describeOutcome } from "./client.js";
import type { Connection } from "./follower.js";
import { LossWindow } from "./histogram.js";
import type {
  ConnectionView, Delta, HealthPanelView, HealthView, HistogramView, LogLine, NotesView, ReceiptView, RunView, RuntimeView,
  SeriesChunk, StatusView,
} from "./protocol.js";
import { RunState, type RunStatus } from "../gen/onthefly/v1/run_pb.js";
import { LifecycleKind, type Event, type SubscribeResponse } from "../gen/onthefly/v1/telemetry_pb.js";

export interface StoreOptions {
  /** Points kept per series before older points are thinned (every other one dropped). */
  maxPoints?: number;
  /** Log lines kept. */
  maxLogs?: number;
  /** Per-sample losses kept in the training window of the histogram. */
  windowSamples?: number;
  /** Receipts kept. */
  maxReceipts?: number;
}

interface Series {
  x: number[];
  y: number[];
  seq: number[];
}

/** A field that is replaced whole, with the store version at which it last changed. */
class Versioned<T> {
  constructor(public value: T, public changedAt = 0) {}
}

const STATE_NAMES: Record<number, string> = {
  [RunState.UNSPECIFIED]: "unknown",
  [RunState.STARTING]: "starting",
  [RunState.RUNNING]: "running",
  [RunState.PAUSED]: "paused",
  [RunState.TESTING]: "testing",
  [RunState.FINISHED]: "finished",
  [RunState.FAILED]: "failed",
};

export function stateName(state: RunState): string {
  return STATE_NAMES[state] ?? "unknown";
}

const EMPTY_STATUS: StatusView = {
  state: "unknown", step: 0, epoch: 0, totalSteps: 0, maxEpochs: 0, lastLoss: null, samplesPerSecond: 0, device: "",
  hyperparameters: [], pendingSteps: 0, error: "",
};

export class RunStore {
  /** Bumped when data the webview holds becomes invalid (thinning, a new run): the next delta is a reset. */
  gen = 1;
  /** Bumped on every change. */
  version = 0;
  /** The newest event seq folded in. */
  lastSeq = 0;

  private readonly opts: Required<StoreOptions>;
  private readonly series = new Map<string, Series>();
  private logs: LogLine[] = [];
  private readonly windows = new Map<string, LossWindow>();
  private readonly windowChanged = new Map<string, number>();
  private readonly histogramCache = new Map<string, { at: number; view: HistogramView | undefined }>();
  private readonly run = new Versioned<RunView | undefined>(undefined);
  private readonly status = new Versioned<StatusView>({ ...EMPTY_STATUS });
  private readonly runtime = new Versioned<RuntimeView | undefined>(undefined);
  private readonly receipts = new Versioned<ReceiptView[]>([]);
  private readonly notes = new Versioned<NotesView>({ droppedAtSource: 0, gaps: [] });
  private readonly connection = new Versioned<ConnectionView>({ state: "connecting", detail: "" });
  private readonly epochStarts = new Versioned<{ epoch: number; step: number }[]>([]);
  private readonly health = new Versioned<HealthPanelView>({ running: false });
  private readonly successor = new Versioned<RunView | undefined>(undefined);
  private healthRuns = 0;
  private rewound = false;
  private listeners: (() => void)[] = [];

  constructor(options: StoreOptions = {}) {
    this.opts = { maxPoints: 100_000, maxLogs: 5_000, windowSamples: 4_096, maxReceipts: 50, ...options };
  }

  /** Calls `fn` after every change (synchronously); returns an unsubscribe function. */
  onChange(fn: () => void): () => void {
    this.listeners.push(fn);
    return () => {
      this.listeners = this.listeners.filter((l) => l !== fn);
    };
  }

  private touch(): number {
    this.version += 1;
    return this.version;
  }

  private changed(): void {
    for (const fn of this.listeners) fn();
  }

  get runView(): RunView | undefined {
    return this.run.value;
  }

  get statusView(): StatusView {
    return this.status.value;
  }

  get connectionView(): ConnectionView {
    return this.connection.value;
  }

  get healthView(): HealthPanelView {
    return this.health.value;
  }

  /** Forgets everything (a different run): the next delta for any webview is a reset. */
  reset(run: RunView | undefined): void {
    this.gen += 1;
    this.lastSeq = 0;
    this.series.clear();
    this.logs = [];
    this.windows.clear();
    this.windowChanged.clear();
    this.histogramCache.clear();
    const v = this.touch();
    this.run.value = run;
    this.run.changedAt = v;
    this.status.value = { ...EMPTY_STATUS };
    this.status.changedAt = v;
    this.runtime.value = undefined;
    this.runtime.changedAt = v;
    this.receipts.value = [];
    this.receipts.changedAt = v;
    this.notes.value = { droppedAtSource: 0, gaps: [] };
    this.notes.changedAt = v;
    this.epochStarts.value = [];
    this.epochStarts.changedAt = v;
    this.health.value = { running: this.healthRuns > 0 };
    this.health.changedAt = v;
    this.successor.value = undefined;
    this.successor.changedAt = v;
    this.changed();
  }

  /** Records the run that carries on this one's work (every view offers to switch to it). */
  setSuccessor(run: RunView): void {
    this.successor.value = run;
    this.successor.changedAt = this.touch();
    this.changed();
  }

  get successorView(): RunView | undefined {
    return this.successor.value;
  }

  /** True once after the run applied a restore or an import (its metric history was replaced). */
  takeRewound(): boolean {
    const r = this.rewound;
    this.rewound = false;
    return r;
  }

  /** Renames the run (same data). */
  setRun(run: RunView): void {
    this.run.value = run;
    this.run.changedAt = this.touch();
    this.changed();
  }

  // -- folding in ------------------------------------------------------------------------------

  /**
   * Takes the run's metric history (from GetMetricHistory) as the start of every series it names and
   * continues after its last seq: events up to it are already in. Every view gets a reset.
   */
  applyHistory(h: { series: Record<string, SeriesChunk>; lastSeq: bigint; epochStarts: { epoch: number; step: number }[] },
    whole = false): void {
    const seq = Number(h.lastSeq);
    this.gen += 1;
    const v = this.touch();
    if (whole) {
      // After a restore: step series the history lacks belong to the abandoned branch.
      for (const name of [...this.series.keys()]) if (!name.startsWith("runtime/") && !(name in h.series)) this.series.delete(name);
      this.epochStarts.value = [];
    }
    for (const [name, chunk] of Object.entries(h.series)) {
      if (!chunk.x.length && !whole) continue;
      const old = this.series.get(name);
      // Points the stream already brought after the history's end stay (they are newer).
      const keep = old ? firstAfter(old.seq, seq) : 0;
      this.series.set(name, {
        x: [...chunk.x, ...(old?.x.slice(keep) ?? [])],
        y: [...chunk.y, ...(old?.y.slice(keep) ?? [])],
        seq: [...chunk.x.map(() => seq), ...(old?.seq.slice(keep) ?? [])],
      });
    }
    if (seq > this.lastSeq) this.lastSeq = seq;
    if (h.epochStarts.length) {
      const later = this.epochStarts.value.filter((e) => !h.epochStarts.some((x) => x.epoch === e.epoch));
      this.epochStarts.value = [...h.epochStarts, ...later].sort((a, b) => a.step - b.step);
      this.epochStarts.changedAt = v;
    }
    if (h.series.loss?.x.length) {
      const n = h.series.loss;
      const s = this.status.value;
      this.status.value = { ...s, step: Math.max(s.step, n.x[n.x.length - 1]) };
      this.status.changedAt = v;
    }
    this.changed();
  }

  /** Folds one telemetry frame in. */
  applyFrame(frame: SubscribeResponse): void {
    const v = this.touch();
    if (frame.gap) {
      const g = frame.gap;
      this.notes.value = {
        ...this.notes.value,
        gaps: [...this.notes.value.gaps, { first: Number(g.firstSeq), last: Number(g.lastSeq), reason: g.reason }].slice(-20),
      };
      this.notes.changedAt = v;
    }
    const dropped = Number(frame.droppedAtSource);
    if (dropped > this.notes.value.droppedAtSource) {
      this.notes.value = { ...this.notes.value, droppedAtSource: dropped };
      this.notes.changedAt = v;
    }
    for (const e of frame.events) this.applyEvent(e, v);
    this.changed();
  }

  private applyEvent(e: Event, v: number): void {
    const seq = Number(e.seq);
    if (seq <= this.lastSeq) return; // already folded in (a replay after reconnect)
    this.lastSeq = seq;
    const step = Number(e.step);
    const epoch = Number(e.epoch);
    const p = e.payload;
    switch (p.case) {
      case "stepMetrics": {
        const m = p.value;
        this.push("loss", step, m.loss, seq);
        this.push("lr", step, m.lr, seq);
        this.push("grad_norm", step, m.gradNorm, seq);
        this.push("samples_per_second", step, m.samplesPerSecond, seq);
        this.push("step_seconds", step, m.stepSeconds, seq);
        this.push("data_seconds", step, m.dataSeconds, seq);
        for (const [k, val] of Object.entries(m.extra)) this.push(`extra/${k}`, step, val, seq);
        const s = this.status.value;
        this.status.value = { ...s, step, epoch, lastLoss: Number.isFinite(m.loss) ? m.loss : s.lastLoss };
        this.status.changedAt = v;
        break;
      }
      case "sampleLosses": {
        const split = p.value.split || "train";
        let w = this.windows.get(split);
        if (!w) {
          w = new LossWindow(split, split === "train" ? this.opts.windowSamples : 65_536);
          this.windows.set(split, w);
        }
        // An evaluation pass happens at one step: a batch at a new step starts a new pass.
        if (split !== "train" && w.count > 0 && w.step !== step) w.clear();
        const indices = p.value.indices;
        const idx = new Float64Array(indices.length);
        for (let i = 0; i < indices.length; i++) idx[i] = Number(indices[i]);
        w.add(step, idx, p.value.losses);
        this.windowChanged.set(split, v);
        break;
      }
      case "evalResult": {
        const r = p.value;
        const split = r.split || "val";
        this.push(`${split}/loss`, step, r.loss, seq);
        for (const [k, val] of Object.entries(r.metrics)) this.push(`${split}/${k}`, step, val, seq);
        break;
      }
      case "log": {
        const l = p.value;
        this.logs.push({ seq, step, time: e.timeUnix, level: l.level, logger: l.logger, message: l.message });
        if (this.logs.length > this.opts.maxLogs * 1.25) this.logs = this.logs.slice(-this.opts.maxLogs);
        break;
      }
      case "runtime": {
        const r = p.value;
        const t = e.timeUnix;
        this.runtime.value = {
          time: t, cpuPercent: r.cpuPercent, rssBytes: Number(r.rssBytes), threads: r.threads,
          gpus: r.gpus.map((g) => ({
            index: g.index, name: g.name, utilizationPercent: g.utilizationPercent,
            memoryUsedBytes: Number(g.memoryUsedBytes), memoryTotalBytes: Number(g.memoryTotalBytes),
            torchAllocatedBytes: Number(g.torchAllocatedBytes),
          })),
        };
        this.runtime.changedAt = v;
        this.push("runtime/cpu_percent", t, r.cpuPercent, seq);
        this.push("runtime/rss_mb", t, Number(r.rssBytes) / 2 ** 20, seq);
        for (const g of r.gpus) {
          this.push(`runtime/gpu${g.index}_util`, t, g.utilizationPercent, seq);
          this.push(`runtime/gpu${g.index}_mem_gb`, t, Number(g.memoryUsedBytes) / 2 ** 30, seq);
        }
        const dropped = Number(r.droppedAtSource);
        if (dropped > this.notes.value.droppedAtSource) {
          this.notes.value = { ...this.notes.value, droppedAtSource: dropped };
          this.notes.changedAt = v;
        }
        break;
      }
      case "lifecycle": {
        const l = p.value;
        const s = this.status.value;
        this.status.value = {
          ...s, state: l.state ? stateName(l.state) : s.state, step, epoch,
          error: l.kind === LifecycleKind.FAILED ? l.message : s.error,
        };
        this.status.changedAt = v;
        if (l.kind === LifecycleKind.EPOCH_STARTED) {
          const starts = this.epochStarts.value.filter((x) => x.epoch !== epoch);
          this.epochStarts.value = [...starts, { epoch, step }].sort((a, b) => a.step - b.step);
          this.epochStarts.changedAt = v;
        }
        if (l.kind === LifecycleKind.STARTED && l.identity && this.run.value && !this.run.value.runId) {
          this.run.value = { ...this.run.value, runId: l.identity.runId };
          this.run.changedAt = v;
        }
        break;
      }
      case "command": {
        const c = p.value;
        if (c.applied && (c.name === "restore" || c.name === "import")) this.rewound = true;
        const status = c.applied ? "applied" : "rejected";
        this.upsertReceipt({
          commandId: Number(c.commandId), command: c.name, status, step, detail: c.detail, at: e.timeUnix * 1000,
        }, v, false);
        break;
      }
      default:
        break;
    }
  }

  private push(name: string, x: number, y: number, seq: number): void {
    if (!Number.isFinite(y)) return; // NaN grad norm = "not computed"; an infinite loss has no place on a linear axis
    let s = this.series.get(name);
    if (!s) {
      s = { x: [], y: [], seq: [] };
      this.series.set(name, s);
    }
    s.x.push(x);
    s.y.push(y);
    s.seq.push(seq);
    if (s.x.length > this.opts.maxPoints) {
      thin(s);
      this.gen += 1; // webviews hold the unthinned points: send them a reset
    }
  }

  /**
   * Adds log lines from before the point the stream was followed from (a late attach reads them from
   * the run's bounded event history); lines already held are skipped. Views get a reset.
   */
  addEarlierLogs(events: Event[]): void {
    const have = new Set(this.logs.map((l) => l.seq));
    const earlier: LogLine[] = [];
    for (const e of events) {
      const seq = Number(e.seq);
      if (e.payload.case !== "log" || have.has(seq)) continue;
      const l = e.payload.value;
      earlier.push({ seq, step: Number(e.step), time: e.timeUnix, level: l.level, logger: l.logger, message: l.message });
    }
    if (!earlier.length) return;
    this.logs = [...earlier, ...this.logs].sort((a, b) => a.seq - b.seq).slice(-this.opts.maxLogs);
    this.gen += 1; // the views hold logs after these: send them everything again
    this.touch();
    this.changed();
  }

  /** Takes a GetStatus snapshot (authoritative for state, step, throughput, hyperparameters). */
  applyStatus(st: RunStatus): void {
    const v = this.touch();
    const prev = this.status.value;
    this.status.value = {
      state: stateName(st.state),
      step: Number(st.step),
      epoch: Number(st.epoch),
      totalSteps: Number(st.totalSteps),
      maxEpochs: Number(st.maxEpochs),
      lastLoss: Number.isFinite(st.lastLoss) ? st.lastLoss : prev.lastLoss,
      samplesPerSecond: st.samplesPerSecond,
      device: st.device,
      hyperparameters: st.hyperparameters.map((h) => ({ group: h.group, values: { ...h.values } })),
      pendingSteps: Number(st.pendingSteps),
      error: st.error,
    };
    this.status.changedAt = v;
    this.changed();
  }

  /** Records the outcome of a command this client sent; returns the receipt as shown. */
  addOutcome(o: CommandOutcome): ReceiptView {
    const v = this.touch();
    const r = this.upsertReceipt({ commandId: o.commandId, command: o.command, status: o.status, step: o.step, detail: o.detail, at: o.at }, v, true);
    if (o.status === "applied") {
      // The receipt is authoritative for the state the command leads to; the next status poll confirms it.
      const next: Record<string, string> = { pause: "paused", resume: "running", stop: "finished" };
      if (next[o.command]) {
        this.status.value = { ...this.status.value, state: next[o.command], step: Math.max(this.status.value.step, o.step) };
        this.status.changedAt = v;
      }
    }
    this.changed();
    return r;
  }

  private upsertReceipt(r: Omit<ReceiptView, "text">, v: number, ours: boolean): ReceiptView {
    const list = this.receipts.value;
    const i = r.commandId > 0 ? list.findIndex((x) => x.commandId === r.commandId) : -1;
    let merged: Omit<ReceiptView, "text"> = r;
    if (i >= 0) {
      const old = list[i];
      // Our call's receipt wins whole (name and detail, e.g. the test result), whichever arrives first,
      // so the line reads the same either way; the run's event only fills in a status we lack.
      merged = ours ? r : { ...old, status: r.status, step: r.step || old.step };
      if (!ours && old.status === "applied") return list[i];
    }
    const view: ReceiptView = { ...merged, text: describeOutcome(merged as CommandOutcome) };
    const next = i >= 0 ? list.map((x, j) => (j === i ? view : x)) : [...list, view];
    this.receipts.value = next.slice(-this.opts.maxReceipts);
    this.receipts.changedAt = v;
    return view;
  }

  /** Marks a run of the health checks as started (from any view or the palette); the panel shows it. */
  healthStarted(): void {
    this.healthRuns += 1;
    this.health.value = { ...this.health.value, running: true };
    this.health.changedAt = this.touch();
    this.changed();
  }

  /** Records a health report (the newest one shown); ends one run started with healthStarted. */
  setHealth(report: HealthView): void {
    this.healthRuns = Math.max(0, this.healthRuns - 1);
    this.health.value = { running: this.healthRuns > 0, report };
    this.health.changedAt = this.touch();
    this.changed();
  }

  /** Records the follower's connection state. */
  setConnection(c: Connection | { state: "detached" }): void {
    const v = this.touch();
    const detail = c.state === "reconnecting"
      ? `reconnecting (attempt ${c.attempt}, resuming after event ${this.lastSeq}): ${c.error}`
      : c.state === "failed" ? c.error : "";
    this.connection.value = { state: c.state, detail };
    this.connection.changedAt = v;
    this.changed();
  }

  // -- reading out -----------------------------------------------------------------------------

  /** Histogram of one split's window ("train", "val", "test"), cached per change. */
  histogram(split: string): HistogramView | undefined {
    const w = this.windows.get(split);
    if (!w) return undefined;
    const at = this.windowChanged.get(split) ?? 0;
    const cached = this.histogramCache.get(split);
    if (cached && cached.at === at) return cached.view;
    const view = w.histogram();
    this.histogramCache.set(split, { at, view });
    return view;
  }

  /** All points of one series (copies). */
  seriesPoints(name: string): SeriesChunk {
    const s = this.series.get(name);
    return { x: s ? [...s.x] : [], y: s ? [...s.y] : [] };
  }

  seriesNames(): string[] {
    return [...this.series.keys()];
  }

  /**
   * What a webview needs to catch up. A webview that holds this store's `gen` and has seen events up
   * to `sinceSeq` and versions up to `sinceVersion` gets only what is newer; any other gen gets a reset
   * with everything.
   */
  delta(viewGen: number, sinceSeq: number, sinceVersion: number): Delta {
    const reset = viewGen !== this.gen;
    if (reset) {
      sinceSeq = 0;
      sinceVersion = 0;
    }
    const series: Record<string, SeriesChunk> = {};
    for (const [name, s] of this.series) {
      const from = firstAfter(s.seq, sinceSeq);
      if (from < s.seq.length) series[name] = { x: s.x.slice(from), y: s.y.slice(from) };
    }
    const logs = this.logs.slice(firstAfter(this.logs.map((l) => l.seq), sinceSeq)).slice(-this.opts.maxLogs);
    const d: Delta = { gen: this.gen, reset, lastSeq: this.lastSeq, series, logs };
    const newer = <T>(f: Versioned<T>) => f.changedAt > sinceVersion;
    if (newer(this.run) && this.run.value) d.run = this.run.value;
    if (newer(this.status)) d.status = this.status.value;
    if (newer(this.runtime) && this.runtime.value) d.runtime = this.runtime.value;
    if (newer(this.receipts)) d.receipts = this.receipts.value;
    if (newer(this.notes)) d.notes = this.notes.value;
    if (newer(this.connection)) d.connection = this.connection.value;
    if (newer(this.epochStarts)) d.epochStarts = this.epochStarts.value;
    if (newer(this.health)) d.health = this.health.value;
    if (newer(this.successor) && this.successor.value) d.successor = this.successor.value;
    for (const split of this.windows.keys()) {
      if ((this.windowChanged.get(split) ?? 0) > sinceVersion) {
        const h = this.histogram(split);
        if (h) (d.histograms ??= {})[split] = h;
      }
    }
    return d;
  }
}

/** Index of the first element greater than `seq` in ascending `seqs`. */
function firstAfter(seqs: number[], seq: number): number {
  let lo = 0;
  let hi = seqs.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (seqs[mid] <= seq) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Drops every other point of the older half, keeping the newest half whole and the first point. */
function thin(s: Series): void {
  const half = s.x.length >>> 1;
  const keep = (i: number) => i >= half || i % 2 === 0;
  s.x = s.x.filter((_, i) => keep(i));
  s.y = s.y.filter((_, i) => keep(i));
  s.seq = s.seq.filter((_, i) => keep(i));
}
