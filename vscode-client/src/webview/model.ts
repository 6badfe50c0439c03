// The webview's copy of the run: deltas from the host are folded in here, and the whole model is
// what the page saves in its webview state (so a reload or tab switch restores it without the host
// re-sending history). Plain data and functions: no DOM.
import type {
  ConnectionView, Delta, HealthPanelView, HistogramView, LogLine, NotesView, ReceiptView, RunView, RuntimeView, SeriesChunk, StatusView,
} from "../core/protocol.js";

export interface ViewModel {
  gen: number;
  lastSeq: number;
  run?: RunView;
  series: Record<string, SeriesChunk>;
  logs: LogLine[];
  epochStarts: { epoch: number; step: number }[];
  histograms: Record<string, HistogramView>;
  runtime?: RuntimeView;
  status?: StatusView;
  receipts: ReceiptView[];
  notes: NotesView;
  connection: ConnectionView;
  health: HealthPanelView;
  successor?: RunView;
}

export interface Prefs {
  xAxis: "step" | "epoch";
  smooth: boolean;
  histSplit: string;
  logLevel: number;
  logSearch: string;
  /** The health check picked to run ("" = all) and whether info findings are listed. */
  healthCheck: string;
  healthInfo: boolean;
  /** The y scale chosen per chart id; a chart not listed uses its default (log for a loss spanning two decades). */
  yScale?: Record<string, "log" | "linear">;
}

export const MAX_LOGS = 5000;
/** Points per series kept in the saved state; longer series are saved thinned (whole range, coarser). */
export const MAX_SAVED_POINTS = 20_000;

export function emptyModel(): ViewModel {
  return {
    gen: -1, lastSeq: 0, series: {}, logs: [], epochStarts: [], histograms: {}, receipts: [],
    notes: { droppedAtSource: 0, gaps: [] }, connection: { state: "connecting", detail: "" }, health: { running: false },
    successor: undefined, // present, so that a reset (Object.assign) clears an offer the page held
  };
}

export function defaultPrefs(): Prefs {
  return { xAxis: "step", smooth: true, histSplit: "train", logLevel: 1, logSearch: "", healthCheck: "", healthInfo: true };
}

/** What a delta changed, so the page redraws only that. */
export interface Changes {
  reset: boolean;
  series: Set<string>;
  logs: boolean;
  histograms: boolean;
  runtime: boolean;
  status: boolean;
  receipts: boolean;
  notes: boolean;
  connection: boolean;
  run: boolean;
  health: boolean;
}

/** Folds a delta into the model in place. */
export function applyDelta(m: ViewModel, d: Delta): Changes {
  const c: Changes = {
    reset: d.reset, series: new Set(), logs: false, histograms: false, runtime: false, status: false, receipts: false,
    notes: false, connection: false, run: false, health: false,
  };
  if (d.reset) {
    const fresh = emptyModel();
    Object.assign(m, fresh, { connection: m.connection });
    c.logs = c.histograms = c.runtime = c.status = c.receipts = c.notes = c.run = c.health = true;
  }
  if (d.gen >= 0) m.gen = d.gen;
  if (d.lastSeq > m.lastSeq || d.reset) m.lastSeq = d.lastSeq;
  for (const [name, chunk] of Object.entries(d.series)) {
    const s = (m.series[name] ??= { x: [], y: [] });
    // Points arrive in seq order, which for step series is step order; keep x ascending regardless
    // (uPlot needs it) by dropping a point that would go back.
    let prev = s.x.length ? s.x[s.x.length - 1] : -Infinity;
    for (let i = 0; i < chunk.x.length; i++) {
      if (chunk.x[i] < prev) continue;
      prev = chunk.x[i];
      s.x.push(prev);
      s.y.push(chunk.y[i]);
    }
    c.series.add(name);
  }
  if (d.logs.length) {
    m.logs.push(...d.logs);
    if (m.logs.length > MAX_LOGS) m.logs.splice(0, m.logs.length - MAX_LOGS);
    c.logs = true;
  }
  if (d.run) {
    m.run = d.run;
    c.run = true;
  }
  if (d.epochStarts) m.epochStarts = d.epochStarts;
  if (d.histograms) {
    Object.assign(m.histograms, d.histograms);
    c.histograms = true;
  }
  if (d.runtime) {
    m.runtime = d.runtime;
    c.runtime = true;
  }
  if (d.status) {
    m.status = d.status;
    c.status = true;
  }
  if (d.receipts) {
    m.receipts = d.receipts;
    c.receipts = true;
  }
  if (d.notes) {
    m.notes = d.notes;
    c.notes = true;
  }
  if (d.connection) {
    m.connection = d.connection;
    c.connection = true;
  }
  if (d.health) {
    m.health = d.health;
    c.health = true;
  }
  if (d.successor) {
    m.successor = d.successor;
    c.notes = true;
  }
  return c;
}

/** A copy of the model small enough to save: long series thinned to MAX_SAVED_POINTS, logs capped. */
export function savable(m: ViewModel, maxPoints = MAX_SAVED_POINTS): ViewModel {
  const series: Record<string, SeriesChunk> = {};
  for (const [name, s] of Object.entries(m.series)) series[name] = thinned(s, maxPoints);
  return { ...m, series, logs: m.logs.slice(-1000) };
}

/** At most `max` points spread over the whole range, the last point always kept. */
export function thinned(s: SeriesChunk, max: number): SeriesChunk {
  const n = s.x.length;
  if (n <= max) return { x: s.x.slice(), y: s.y.slice() };
  const stride = n / (max - 1);
  const x: number[] = [];
  const y: number[] = [];
  for (let k = 0; k < max - 1; k++) {
    const i = Math.floor(k * stride);
    x.push(s.x[i]);
    y.push(s.y[i]);
  }
  x.push(s.x[n - 1]);
  y.push(s.y[n - 1]);
  return { x, y };
}

/** Exponential moving average (debiased, like TensorBoard's smoothing) of ys from index `from`, appended to out. */
export function emaInto(ys: number[], out: number[], weight = 0.9): void {
  let last = out.length ? out[out.length - 1] : 0;
  let debias = Math.pow(weight, out.length);
  let acc = out.length ? last * (1 - debias) : 0;
  for (let i = out.length; i < ys.length; i++) {
    acc = acc * weight + (1 - weight) * ys[i];
    debias *= weight;
    last = acc / (1 - debias);
    out.push(last);
  }
}

/** The fractional epoch at `step`, from the steps at which epochs began. */
export function epochAt(step: number, starts: { epoch: number; step: number }[]): number {
  if (!starts.length) return NaN;
  let i = 0;
  while (i + 1 < starts.length && starts[i + 1].step <= step) i++;
  const a = starts[i];
  const b = starts[i + 1];
  const len = b ? b.step - a.step : i > 0 ? a.step - starts[i - 1].step : 0;
  return len > 0 ? a.epoch + Math.min(1, Math.max(0, (step - a.step) / len)) : a.epoch;
}

/** Log lines passing the level filter and the (case-insensitive) search text. */
export function filterLogs(logs: LogLine[], minLevel: number, search: string, limit = 500): LogLine[] {
  const needle = search.trim().toLowerCase();
  const out: LogLine[] = [];
  for (let i = logs.length - 1; i >= 0 && out.length < limit; i--) {
    const l = logs[i];
    if (l.level < minLevel) continue;
    if (needle && !l.message.toLowerCase().includes(needle) && !l.logger.toLowerCase().includes(needle)) continue;
    out.push(l);
  }
  return out.reverse();
}
