// Live line charts (uPlot: canvas, handles 100k+ points per series). Step charts share one x zoom:
// drag to zoom, double-click or "Reset" to follow the live edge again; keyboard: +/- zoom, arrows pan,
// 0 resets. Each chart exports a PNG drawn on the theme's background.
import uPlot from "uplot";
import { emaInto, epochAt, type Prefs, type ViewModel } from "./model.js";
import type { SeriesChunk } from "../core/protocol.js";
import { fmtEpoch, fmtNum, yScale } from "./scales.js";
import type { Theme } from "./theme.js";

export { fmtNum } from "./scales.js";

/** One chart: which series it plots and on what x. */
export interface ChartSpec {
  id: string;
  title: string;
  x: "step" | "time";
  series: { name: string; label: string; color: keyof Theme["colors"]; smooth?: boolean; points?: boolean }[];
  height: number;
  /** A percentage: the y axis runs from 0 to at least 100, so it always has real ticks. */
  percent?: boolean;
  /** Values can be drawn on a log axis (all positive quantities); the toggle shows only then. */
  loggable?: boolean;
}

const STEP_CHARTS: Record<string, Omit<ChartSpec, "id" | "series"> & { color: keyof Theme["colors"]; label: string }> = {
  loss: { title: "Training loss", label: "loss", x: "step", height: 220, color: "blue" },
  lr: { title: "Learning rate", label: "lr", x: "step", height: 140, color: "purple" },
  grad_norm: { title: "Gradient norm", label: "grad norm", x: "step", height: 140, color: "orange" },
  samples_per_second: { title: "Throughput (samples/s over the last 10 s)", label: "samples/s", x: "step", height: 140, color: "green" },
  step_seconds: { title: "Step time (s)", label: "step", x: "step", height: 140, color: "yellow" },
};

/** The charts the model's series call for, in display order. */
export function chartSpecs(m: ViewModel, prefs: Prefs): { main: ChartSpec[]; runtime: ChartSpec[] } {
  const names = Object.keys(m.series);
  const main: ChartSpec[] = [];
  for (const [id, c] of Object.entries(STEP_CHARTS)) {
    if (!m.series[id]) continue;
    const series: ChartSpec["series"] = [{ name: id, label: c.label, color: c.color }];
    if (id === "loss" && prefs.smooth) series.push({ name: id, label: "smoothed", color: "red", smooth: true });
    if (id === "step_seconds" && m.series.data_seconds) series.push({ name: "data_seconds", label: "data", color: "purple" });
    main.push({ id, title: c.title, x: c.x, height: c.height, series, loggable: id !== "samples_per_second" });
  }
  const evalMetrics = new Set<string>();
  for (const n of names) {
    const m2 = /^(val|test)\/(.+)$/.exec(n);
    if (m2) evalMetrics.add(m2[2]);
  }
  for (const metric of [...evalMetrics].sort((a, b) => (a === "loss" ? -1 : b === "loss" ? 1 : a.localeCompare(b)))) {
    const series: ChartSpec["series"] = [];
    if (m.series[`val/${metric}`]) series.push({ name: `val/${metric}`, label: `val ${metric}`, color: "green", points: true });
    if (m.series[`test/${metric}`]) series.push({ name: `test/${metric}`, label: `test ${metric}`, color: "red", points: true });
    main.push({ id: `eval/${metric}`, title: `Evaluation ${metric}`, x: "step", height: 160, series, loggable: metric === "loss" });
  }
  for (const n of names.filter((n) => n.startsWith("extra/")).sort()) {
    main.push({ id: n, title: n.slice(6), x: "step", height: 140, series: [{ name: n, label: n.slice(6), color: "blue" }] });
  }
  const runtime: ChartSpec[] = [];
  if (m.series["runtime/cpu_percent"]) {
    runtime.push({ id: "runtime/cpu", title: "CPU % (100 = one core)", x: "time", height: 110, percent: true,
      series: [{ name: "runtime/cpu_percent", label: "cpu %", color: "blue" }] });
  }
  if (m.series["runtime/rss_mb"]) {
    runtime.push({ id: "runtime/rss", title: "Memory (RSS, MiB)", x: "time", height: 110, series: [{ name: "runtime/rss_mb", label: "MiB", color: "purple" }] });
  }
  for (const n of names.filter((n) => /^runtime\/gpu\d+_util$/.test(n)).sort()) {
    const i = n.match(/\d+/)![0];
    const series: ChartSpec["series"] = [{ name: n, label: `gpu${i} util %`, color: "green" }];
    runtime.push({ id: `runtime/gpu${i}`, title: `GPU ${i} utilization %`, x: "time", height: 110, series, percent: true });
    if (m.series[`runtime/gpu${i}_mem_gb`]) {
      runtime.push({ id: `runtime/gpu${i}mem`, title: `GPU ${i} memory (GiB)`, x: "time", height: 110,
        series: [{ name: `runtime/gpu${i}_mem_gb`, label: "GiB", color: "orange" }] });
    }
  }
  return { main, runtime };
}

interface Chart {
  spec: ChartSpec;
  key: string;
  el: HTMLElement;
  plot: uPlot;
  smooth: Map<string, number[]>;
  points: number;
}

/** The trainer's answer to a zoom: every step (or min/max per pixel) of the zoomed range. */
export interface ZoomDetail {
  id: number;
  min: number;
  max: number;
  series: Record<string, SeriesChunk>;
}

export class ChartBoard {
  private charts = new Map<string, Chart>();
  /** Shared x range of the step charts while zoomed; null follows the data. */
  private zoom: { min: number; max: number } | null = null;
  /** The zoomed range in detail, from the run's history (replaces the page's coarser points there). */
  private detail: ZoomDetail | null = null;
  private zoomId = 0;
  private readonly resize: ResizeObserver;
  /** Asks the host for the zoomed range in detail; the answer comes back through setDetail. */
  onZoom: (request: { id: number; names: string[]; min: number; max: number; buckets: number }) => void = () => {};

  constructor(
    private readonly mainEl: HTMLElement,
    private readonly runtimeEl: HTMLElement,
    private theme: Theme,
    private readonly getModel: () => ViewModel,
    private readonly getPrefs: () => Prefs,
    private readonly onExport: (name: string, dataUrl: string) => void,
  ) {
    this.resize = new ResizeObserver(() => this.fitWidths());
  }

  /** Number of points drawn per chart id (for tests and the accessibility label). */
  pointCounts(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [id, c] of this.charts) out[id] = c.points;
    return out;
  }

  setTheme(theme: Theme): void {
    this.theme = theme;
    this.rebuild();
  }

  /** Destroys and recreates every chart (theme or axis change). */
  rebuild(): void {
    for (const c of this.charts.values()) {
      c.plot.destroy();
      c.el.remove();
    }
    this.charts.clear();
    this.update(null);
  }

  /** Creates charts that the model now calls for and redraws those whose series changed (null: all). */
  update(changed: Set<string> | null): void {
    const model = this.getModel();
    const specs = chartSpecs(model, this.getPrefs());
    for (const [list, host] of [[specs.main, this.mainEl], [specs.runtime, this.runtimeEl]] as const) {
      for (const [order, spec] of list.entries()) {
        const key = spec.series.map((s) => s.name + (s.smooth ? "~" : "")).join(",") + `|${yScale(spec, model, this.getPrefs())}`;
        let chart = this.charts.get(spec.id);
        if (chart && chart.key !== key) {
          chart.plot.destroy();
          chart.el.remove();
          this.charts.delete(spec.id);
          chart = undefined;
        }
        if (!chart) {
          chart = this.create(spec, key, host);
          this.charts.set(spec.id, chart);
          this.setData(chart);
        } else if (!changed || spec.series.some((s) => changed.has(s.name))) {
          this.setData(chart);
        }
        chart.el.style.order = String(order);
      }
    }
  }

  private create(spec: ChartSpec, key: string, host: HTMLElement): Chart {
    const el = document.createElement("div");
    el.className = "chart";
    el.tabIndex = 0;
    el.dataset.chart = spec.id;
    el.setAttribute("role", "group");
    el.setAttribute("aria-label", `${spec.title} chart. Drag to zoom; keys: plus and minus zoom, arrows pan, 0 resets.`);
    const head = document.createElement("div");
    head.className = "chart-head";
    const title = document.createElement("span");
    title.className = "chart-title";
    title.textContent = spec.title;
    const tools = document.createElement("span");
    tools.className = "chart-tools";
    const reset = button("Reset", `Reset zoom of ${spec.title}`, () => this.resetZoom(spec.x));
    const png = button("PNG", `Export ${spec.title} as PNG`, () => this.exportPng(spec.id));
    png.dataset.export = spec.id;
    tools.append(reset, png);
    head.append(title, tools);
    const body = document.createElement("div");
    body.className = "chart-body";
    el.append(head, body);
    // Keep display order: insert before the first chart that comes later in the spec order.
    host.append(el);
    el.addEventListener("keydown", (ev) => this.onKey(ev, spec));

    const t = this.theme;
    const axis: uPlot.Axis = {
      stroke: t.axis, grid: { stroke: t.grid, width: 1 }, ticks: { stroke: t.grid, width: 1 }, font: t.font, labelFont: t.font,
    };
    const prefs = this.getPrefs();
    const log = yScale(spec, this.getModel(), prefs) === "log";
    const xAxis: uPlot.Axis = spec.x === "step" && prefs.xAxis === "epoch"
      ? { ...axis, values: (_u, splits) => splits.map((v) => fmtEpoch(epochAt(v, this.getModel().epochStarts))) }
      : { ...axis };
    // On a log axis uPlot ticks 1..9 of every decade: label and grid the decades only, or a tall range
    // stacks labels on top of each other. (uPlot hands filtered-out ticks over as null.)
    const decade = (v: number | null) => v != null && v > 0 && Math.abs(Math.log10(v) - Math.round(Math.log10(v))) < 1e-9;
    const onlyDecades = (_u: uPlot, splits: number[]) => splits.map((v) => (decade(v) ? v : null)) as number[];
    const yAxis: uPlot.Axis = log
      ? { ...axis, size: fitLabels, values: (_u, splits) => splits.map((v) => (decade(v) ? fmtNum(v) : null)) as string[],
        grid: { ...axis.grid, filter: onlyDecades }, ticks: { ...axis.ticks, filter: onlyDecades } }
      : { ...axis, size: fitLabels, values: (_u, splits) => splits.map((v) => (v == null ? null : fmtNum(v))) as string[] };
    const yScaleOpts: uPlot.Scale = log ? { distr: 3, log: 10 }
      : spec.percent ? { range: (_u, _min, max) => [0, Math.max(100, Math.ceil((max || 0) / 50) * 50)] }
      : {};
    if (spec.loggable) {
      const toggle = button("log", `${spec.title}: y axis is ${log ? "logarithmic" : "linear"}; switch to ${log ? "linear" : "log"}`,
        () => this.setYScale(spec.id, log ? "linear" : "log"));
      toggle.dataset.scale = log ? "log" : "linear";
      toggle.setAttribute("aria-pressed", String(log));
      tools.prepend(toggle);
    }
    el.dataset.scale = log ? "log" : "linear";
    const opts: uPlot.Options = {
      width: chartWidth(el),
      height: spec.height,
      scales: { x: { time: spec.x === "time" }, y: yScaleOpts },
      series: [
        { label: spec.x === "time" ? "time" : prefs.xAxis, value: (_u, v) => (v == null ? "–" : spec.x === "time" ? new Date(v * 1000).toLocaleTimeString() : prefs.xAxis === "epoch" ? fmtEpoch(epochAt(v, this.getModel().epochStarts)) : String(v)) },
        ...spec.series.map((s): uPlot.Series => ({
          label: s.label, stroke: t.colors[s.color], width: s.smooth ? 2 : 1,
          points: s.points ? { show: true, size: 6, fill: t.colors[s.color] } : { show: false }, spanGaps: !!s.points,
          value: (_u, v) => (v == null ? "–" : fmtNum(v)),
        })),
      ],
      axes: [xAxis, yAxis],
      // Zoom is ours, not uPlot's: a drag selects a range, which we apply to every step chart.
      cursor: { drag: { x: true, y: false, setScale: false } },
      legend: { show: true, live: true },
      hooks: {
        draw: [(u) => noteLabelFit(u, el)],
        setSelect: [(u) => {
          if (u.select.width < 4) return;
          const min = u.posToVal(u.select.left, "x");
          const max = u.posToVal(u.select.left + u.select.width, "x");
          u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
          if (spec.x === "step") this.applyZoom({ min, max });
          else u.setScale("x", { min, max });
        }],
      },
    };
    const plot = new uPlot(opts, [[], ...spec.series.map(() => [])] as uPlot.AlignedData, body);
    plot.over.addEventListener("dblclick", () => this.resetZoom(spec.x));
    this.resize.observe(el);
    return { spec, key, el, plot, smooth: new Map(), points: 0 };
  }

  /** A series as drawn: the page's points, with the zoomed range replaced by the history's detail. */
  private source(spec: ChartSpec, name: string): SeriesChunk {
    const own = this.getModel().series[name] ?? { x: [], y: [] };
    const d = this.detail;
    const fine = d && this.zoom && spec.x === "step" ? d.series[name] : undefined;
    if (!d || !fine) return own;
    const lo = firstAtLeast(own.x, Math.floor(d.min));
    const hi = firstAtLeast(own.x, Math.floor(d.max) + 1);
    return { x: [...own.x.slice(0, lo), ...fine.x, ...own.x.slice(hi)], y: [...own.y.slice(0, lo), ...fine.y, ...own.y.slice(hi)] };
  }

  private data(chart: Chart): uPlot.AlignedData {
    const spec = chart.spec;
    const detailed = !!(this.detail && this.zoom && spec.x === "step");
    const srcs = spec.series.map((s) => this.source(spec, s.name));
    const first = srcs[0];
    const sameX = srcs.every((o) => o.x.length === first.x.length && o.x[o.x.length - 1] === first.x[first.x.length - 1]);
    const log = yScale(spec, this.getModel(), this.getPrefs()) === "log";
    const ys = spec.series.map((s, i) => {
      const src = srcs[i];
      let out: number[];
      if (!s.smooth) out = src.y;
      else if (detailed) {
        out = []; // the detail replaced points in the middle: smooth afresh
        emaInto(src.y, out, 0.9);
      } else {
        let cached = chart.smooth.get(s.name);
        if (!cached || cached.length > src.y.length) {
          cached = [];
          chart.smooth.set(s.name, cached);
        }
        emaInto(src.y, cached, 0.9);
        out = cached;
      }
      // A log axis has no place for zero or below: leave those points out rather than break the scale.
      return log ? out.map((y) => (y > 0 ? y : null)) : out;
    });
    if (sameX) return [first.x, ...ys] as uPlot.AlignedData;
    const tables = srcs.map((src, i) => [src.x, ys[i]] as uPlot.AlignedData);
    return uPlot.join(tables);
  }

  /** Takes the host's answer to a zoom (ignored when the zoom has moved on since). */
  setDetail(detail: ZoomDetail): void {
    if (detail.id !== this.zoomId || !this.zoom) return;
    this.detail = Object.keys(detail.series).length ? detail : null;
    for (const c of this.charts.values()) if (c.spec.x === "step") this.setData(c);
    const n = this.detail ? Math.max(0, ...Object.values(this.detail.series).map((s) => s.x.length)) : 0;
    document.body.dataset.zoomDetail = String(n);
  }

  private requestDetail(range: { min: number; max: number }): void {
    this.zoomId += 1;
    const names = new Set<string>();
    let width = 0;
    for (const c of this.charts.values()) {
      if (c.spec.x !== "step") continue;
      for (const s of c.spec.series) names.add(s.name);
      width = Math.max(width, c.plot.width);
    }
    if (!names.size) return;
    this.onZoom({ id: this.zoomId, names: [...names], min: range.min, max: range.max, buckets: Math.max(100, Math.round(width)) });
  }

  /** Switches one chart between a log and a linear y axis (saved with the page's preferences). */
  setYScale(id: string, scale: "log" | "linear"): void {
    const prefs = this.getPrefs();
    prefs.yScale = { ...(prefs.yScale ?? {}), [id]: scale };
    this.update(null);
  }

  private setData(chart: Chart): void {
    const data = this.data(chart);
    chart.points = data[0].length;
    chart.plot.setData(data, true);
    if (this.zoom && chart.spec.x === "step") chart.plot.setScale("x", this.zoom);
    chart.el.dataset.points = String(chart.points);
    chart.el.dataset.firstX = data[0].length ? String(data[0][0]) : "";
  }

  /** Shows the x range [min, max] on every step chart until reset. */
  applyZoom(range: { min: number; max: number }): void {
    this.zoom = range;
    this.detail = null;
    for (const c of this.charts.values()) if (c.spec.x === "step") c.plot.setScale("x", range);
    document.body.dataset.zoomed = "true";
    delete document.body.dataset.zoomDetail;
    this.requestDetail(range);
  }

  /** Back to following the live edge. */
  resetZoom(kind: "step" | "time" = "step"): void {
    if (kind === "step") {
      const hadDetail = !!this.detail;
      this.zoom = null;
      this.detail = null;
      this.zoomId += 1; // an answer still on its way is for a zoom that is gone
      delete document.body.dataset.zoomed;
      delete document.body.dataset.zoomDetail;
      if (hadDetail) {
        for (const c of this.charts.values()) if (c.spec.x === "step") this.setData(c);
        return;
      }
    }
    for (const c of this.charts.values()) if (c.spec.x === kind) c.plot.setData(c.plot.data, true);
  }

  private onKey(ev: KeyboardEvent, spec: ChartSpec): void {
    const c = this.charts.get(spec.id);
    if (!c || spec.x !== "step") return;
    const xs = c.plot.data[0];
    if (!xs.length) return;
    const lo = this.zoom?.min ?? xs[0];
    const hi = this.zoom?.max ?? xs[xs.length - 1];
    const span = Math.max(1, hi - lo);
    let next: { min: number; max: number } | null | undefined;
    if (ev.key === "+" || ev.key === "=") next = { min: lo + span / 4, max: hi - span / 4 };
    else if (ev.key === "-" || ev.key === "_") next = { min: lo - span / 2, max: hi + span / 2 };
    else if (ev.key === "ArrowLeft") next = { min: lo - span / 10, max: hi - span / 10 };
    else if (ev.key === "ArrowRight") next = { min: lo + span / 10, max: hi + span / 10 };
    else if (ev.key === "0" || ev.key === "Escape") next = null;
    if (next === undefined) return;
    ev.preventDefault();
    if (next === null || (next.min <= xs[0] && next.max >= xs[xs.length - 1])) this.resetZoom("step");
    else this.applyZoom(next);
  }

  /** Draws the chart (title, plot, legend values) onto an opaque canvas and hands over a PNG data URL. */
  exportPng(id: string): string | undefined {
    const c = this.charts.get(id);
    if (!c) return undefined;
    const src = c.plot.ctx.canvas;
    const pad = 8 * devicePixelRatio;
    const titleH = 22 * devicePixelRatio;
    const out = document.createElement("canvas");
    out.width = src.width + 2 * pad;
    out.height = src.height + titleH + 2 * pad;
    const ctx = out.getContext("2d")!;
    ctx.fillStyle = this.theme.background;
    ctx.fillRect(0, 0, out.width, out.height);
    ctx.fillStyle = this.theme.foreground;
    ctx.font = `${13 * devicePixelRatio}px ${this.theme.fontFamily}`;
    ctx.textBaseline = "top";
    const run = this.getModel().run?.label ?? "";
    ctx.fillText(`${c.spec.title}${run ? ` — ${run}` : ""}`, pad, pad);
    ctx.drawImage(src, pad, pad + titleH);
    const url = out.toDataURL("image/png");
    this.onExport(`${(run || "run").replace(/\W+/g, "_")}-${id.replace(/\W+/g, "_")}`, url);
    return url;
  }

  private fitWidths(): void {
    for (const c of this.charts.values()) {
      const width = chartWidth(c.el);
      if (Math.abs(width - c.plot.width) > 2) c.plot.setSize({ width, height: c.spec.height });
    }
  }
}

/** The plot width that fits the chart's box (its flex size, not its content). */
function chartWidth(el: HTMLElement): number {
  return Math.max(160, Math.floor(el.clientWidth - 10));
}

function button(text: string, label: string, onClick: () => void): HTMLButtonElement {
  const b = document.createElement("button");
  b.className = "icon";
  b.textContent = text;
  b.title = label;
  b.setAttribute("aria-label", label);
  b.addEventListener("click", onClick);
  return b;
}

/**
 * Records on the chart's element, after each draw, the room left of the plot for y tick labels and the
 * width of the widest label drawn (CSS px), so a test can check in a real browser that none is clipped.
 */
function noteLabelFit(u: uPlot, el: HTMLElement): void {
  const axis = u.axes[1] as uPlot.Axis & { _values?: string[] };
  const labels = axis._values ?? [];
  u.ctx.save();
  u.ctx.font = (axis.font as unknown as string[])?.[0] ?? u.ctx.font;
  const widest = Math.max(0, ...labels.filter((v) => v != null).map((v) => u.ctx.measureText(String(v)).width / devicePixelRatio));
  u.ctx.restore();
  const ticks = (axis.ticks as { size?: number } | undefined)?.size ?? 10;
  el.dataset.yLabelRoom = (u.bbox.left / devicePixelRatio - ticks - (axis.gap ?? 5)).toFixed(1);
  el.dataset.yLabelWidest = widest.toFixed(1);
  el.dataset.yLabels = labels.filter((v) => v != null).join("|");
}

/** Index of the first x at or after `v` in ascending xs. */
function firstAtLeast(xs: number[], v: number): number {
  let lo = 0;
  let hi = xs.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (xs[mid] < v) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * The y axis's width: its widest tick label, measured in the axis font, plus tick and gap. A fixed
 * width clipped labels such as "-1.50e-4" to ".50e-4".
 */
function fitLabels(u: uPlot, values: string[] | null, axisIdx: number, cycleNum: number): number {
  const axis = u.axes[axisIdx] as uPlot.Axis & { _size?: number };
  if (cycleNum > 1 && axis._size) return axis._size;
  const ticks = (axis.ticks as { size?: number } | undefined)?.size ?? 10;
  let size = ticks + (axis.gap ?? 5) + 6;
  const widest = (values ?? []).reduce((a, v) => (v != null && String(v).length > a.length ? String(v) : a), "");
  if (widest) {
    u.ctx.font = (axis.font as unknown as string[])?.[0] ?? u.ctx.font;
    size += u.ctx.measureText(widest).width / devicePixelRatio;
  }
  return Math.ceil(Math.max(40, size));
}
