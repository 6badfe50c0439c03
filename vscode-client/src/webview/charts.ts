// Live line charts (uPlot: canvas, handles 100k+ points per series). Step charts share one x zoom:
// drag to zoom, double-click or "Reset" to follow the live edge again; keyboard: +/- zoom, arrows pan,
// 0 resets. Each chart exports a PNG drawn on the theme's background.
import uPlot from "uplot";
import { emaInto, epochAt, type Prefs, type ViewModel } from "./model.js";
import type { Theme } from "./theme.js";

/** One chart: which series it plots and on what x. */
export interface ChartSpec {
  id: string;
  title: string;
  x: "step" | "time";
  series: { name: string; label: string; color: keyof Theme["colors"]; smooth?: boolean; points?: boolean }[];
  height: number;
}

const STEP_CHARTS: Record<string, Omit<ChartSpec, "id" | "series"> & { color: keyof Theme["colors"]; label: string }> = {
  loss: { title: "Training loss", label: "loss", x: "step", height: 220, color: "blue" },
  lr: { title: "Learning rate", label: "lr", x: "step", height: 140, color: "purple" },
  grad_norm: { title: "Gradient norm", label: "grad norm", x: "step", height: 140, color: "orange" },
  samples_per_second: { title: "Throughput (samples/s)", label: "samples/s", x: "step", height: 140, color: "green" },
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
    main.push({ id, title: c.title, x: c.x, height: c.height, series });
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
    main.push({ id: `eval/${metric}`, title: `Evaluation ${metric}`, x: "step", height: 160, series });
  }
  for (const n of names.filter((n) => n.startsWith("extra/")).sort()) {
    main.push({ id: n, title: n.slice(6), x: "step", height: 140, series: [{ name: n, label: n.slice(6), color: "blue" }] });
  }
  const runtime: ChartSpec[] = [];
  if (m.series["runtime/cpu_percent"]) {
    runtime.push({ id: "runtime/cpu", title: "CPU %", x: "time", height: 110, series: [{ name: "runtime/cpu_percent", label: "cpu %", color: "blue" }] });
  }
  if (m.series["runtime/rss_mb"]) {
    runtime.push({ id: "runtime/rss", title: "Memory (RSS, MiB)", x: "time", height: 110, series: [{ name: "runtime/rss_mb", label: "MiB", color: "purple" }] });
  }
  for (const n of names.filter((n) => /^runtime\/gpu\d+_util$/.test(n)).sort()) {
    const i = n.match(/\d+/)![0];
    const series: ChartSpec["series"] = [{ name: n, label: `gpu${i} util %`, color: "green" }];
    runtime.push({ id: `runtime/gpu${i}`, title: `GPU ${i} utilization %`, x: "time", height: 110, series });
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

export class ChartBoard {
  private charts = new Map<string, Chart>();
  /** Shared x range of the step charts while zoomed; null follows the data. */
  private zoom: { min: number; max: number } | null = null;
  private readonly resize: ResizeObserver;

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
        const key = spec.series.map((s) => s.name + (s.smooth ? "~" : "")).join(",");
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
    const xAxis: uPlot.Axis = spec.x === "step" && prefs.xAxis === "epoch"
      ? { ...axis, values: (_u, splits) => splits.map((v) => fmtEpoch(epochAt(v, this.getModel().epochStarts))) }
      : { ...axis };
    const opts: uPlot.Options = {
      width: chartWidth(el),
      height: spec.height,
      scales: { x: { time: spec.x === "time" } },
      series: [
        { label: spec.x === "time" ? "time" : prefs.xAxis, value: (_u, v) => (v == null ? "–" : spec.x === "time" ? new Date(v * 1000).toLocaleTimeString() : prefs.xAxis === "epoch" ? fmtEpoch(epochAt(v, this.getModel().epochStarts)) : String(v)) },
        ...spec.series.map((s): uPlot.Series => ({
          label: s.label, stroke: t.colors[s.color], width: s.smooth ? 2 : 1,
          points: s.points ? { show: true, size: 6, fill: t.colors[s.color] } : { show: false }, spanGaps: !!s.points,
          value: (_u, v) => (v == null ? "–" : fmtNum(v)),
        })),
      ],
      axes: [xAxis, { ...axis, size: 56, values: (_u, splits) => splits.map(fmtNum) }],
      // Zoom is ours, not uPlot's: a drag selects a range, which we apply to every step chart.
      cursor: { drag: { x: true, y: false, setScale: false } },
      legend: { show: true, live: true },
      hooks: {
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

  private data(chart: Chart): uPlot.AlignedData {
    const model = this.getModel();
    const spec = chart.spec;
    const first = model.series[spec.series[0].name] ?? { x: [], y: [] };
    const sameX = spec.series.every((s) => {
      const other = model.series[s.name];
      return other && other.x.length === first.x.length && other.x[other.x.length - 1] === first.x[first.x.length - 1];
    });
    const ys = spec.series.map((s) => {
      const src = model.series[s.name] ?? { x: [], y: [] };
      if (!s.smooth) return src.y;
      let out = chart.smooth.get(s.name);
      if (!out || out.length > src.y.length) {
        out = [];
        chart.smooth.set(s.name, out);
      }
      emaInto(src.y, out, 0.9);
      return out;
    });
    if (sameX) return [first.x, ...ys] as uPlot.AlignedData;
    const tables = spec.series.map((s, i) => [model.series[s.name]?.x ?? [], ys[i]] as uPlot.AlignedData);
    return uPlot.join(tables);
  }

  private setData(chart: Chart): void {
    const data = this.data(chart);
    chart.points = data[0].length;
    chart.plot.setData(data, true);
    if (this.zoom && chart.spec.x === "step") chart.plot.setScale("x", this.zoom);
    chart.el.dataset.points = String(chart.points);
  }

  /** Shows the x range [min, max] on every step chart until reset. */
  applyZoom(range: { min: number; max: number }): void {
    this.zoom = range;
    for (const c of this.charts.values()) if (c.spec.x === "step") c.plot.setScale("x", range);
    document.body.dataset.zoomed = "true";
  }

  /** Back to following the live edge. */
  resetZoom(kind: "step" | "time" = "step"): void {
    if (kind === "step") {
      this.zoom = null;
      delete document.body.dataset.zoomed;
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

export function fmtNum(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e6)) return v.toExponential(2);
  return Number(v.toPrecision(4)).toString();
}

function fmtEpoch(e: number): string {
  return Number.isFinite(e) ? `e${e.toFixed(2)}` : "–";
}
