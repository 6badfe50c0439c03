// The compare page: one chart per metric with a line per run (from CompareView messages), theme-aware,
// log or linear y per chart like the dashboard.
import "uplot/dist/uPlot.min.css";
import "./dashboard.css";
import uPlot from "uplot";
import type { CompareRun, CompareView } from "../core/protocol.js";
import { fmtNum, spansDecades } from "./scales.js";
import { readTheme, type Theme } from "./theme.js";

declare function acquireVsCodeApi(): { postMessage(message: unknown): void };
const vscode = acquireVsCodeApi();

const host = document.getElementById("compare-charts")!;
const caption = document.getElementById("compare-caption")!;
const plots: uPlot[] = [];
let last: CompareView | undefined;

function palette(t: Theme): string[] {
  const c = t.colors;
  return [c.blue, c.orange, c.green, c.purple, c.red, c.yellow];
}

const KIND_WORDS = { live: "live", session: "finished session", experiment: "tracked experiment" } as const;

function legendLabel(r: CompareRun): string {
  return r.kind === "session" ? `${r.label} · finished` : r.kind === "experiment" ? `${r.label} · tracked` : r.label;
}

function draw(view: CompareView): void {
  last = view;
  for (const p of plots.splice(0)) p.destroy();
  host.replaceChildren();
  const theme = readTheme();
  const colors = palette(theme);
  const failed = view.runs.filter((r) => r.error);
  const kinds = (["live", "session", "experiment"] as const)
    .map((k) => [view.runs.filter((r) => (r.kind ?? "live") === k).length, KIND_WORDS[k]] as const)
    .filter(([n]) => n > 0).map(([n, w]) => `${n} ${w}`);
  caption.textContent = `${view.runs.length} runs (${kinds.join(", ")}) · read ${new Date(view.at).toLocaleTimeString()}` +
    (failed.length ? ` · not readable: ${failed.map((r) => `${r.label} (${r.error})`).join("; ")}` : "");
  caption.classList.toggle("error", failed.length > 0);
  for (const metric of view.metrics) {
    const runs = view.runs.filter((r) => r.series[metric]?.x.length);
    if (!runs.length) continue;
    const el = document.createElement("div");
    el.className = "chart";
    el.dataset.chart = metric;
    el.dataset.runs = String(runs.length);
    el.dataset.kinds = runs.map((r) => r.kind ?? "live").join(",");
    const title = document.createElement("div");
    title.className = "chart-title";
    title.textContent = metric;
    el.append(title);
    host.append(el);
    const log = runs.some((r) => spansDecades(r.series[metric].y, 2));
    el.dataset.scale = log ? "log" : "linear";
    const axis: uPlot.Axis = { stroke: theme.axis, grid: { stroke: theme.grid, width: 1 }, ticks: { stroke: theme.grid, width: 1 }, font: theme.font };
    const data = uPlot.join(runs.map((r) => [r.series[metric].x, r.series[metric].y.map((y) => (log && y <= 0 ? null : y))] as uPlot.AlignedData));
    const plot = new uPlot({
      width: Math.max(240, host.clientWidth - 10), height: 260,
      scales: { x: { time: false }, y: log ? { distr: 3, log: 10 } : {} },
      series: [
        { label: "step" },
        // Stored runs (finished sessions, tracked experiments) dashed, live ones solid; the legend says which.
        ...runs.map((r, i): uPlot.Series => ({ label: legendLabel(r), stroke: colors[i % colors.length], width: 1.5, spanGaps: true,
          ...(r.kind && r.kind !== "live" ? { dash: [6, 3] } : {}),
          value: (_u, v) => (v == null ? "–" : fmtNum(v)) })),
      ],
      axes: [axis, { ...axis, size: 70, values: (_u, splits) => splits.map((v) => (v == null ? null : fmtNum(v))) as string[] }],
      legend: { show: true, live: true },
    }, data, el);
    plots.push(plot);
  }
  if (!host.childElementCount) {
    const p = document.createElement("p");
    p.className = "muted";
    p.textContent = "None of the chosen runs has these metrics yet.";
    host.append(p);
  }
}

window.addEventListener("message", (ev: MessageEvent) => {
  const m = ev.data as { type?: string; view?: CompareView };
  if (m?.type === "compare" && m.view) draw(m.view);
});
new MutationObserver(() => last && draw(last)).observe(document.body, { attributes: true, attributeFilter: ["class"] });
new ResizeObserver(() => {
  for (const p of plots) p.setSize({ width: Math.max(240, host.clientWidth - 10), height: 260 });
}).observe(host);
vscode.postMessage({ type: "ready" });
