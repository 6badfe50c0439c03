// Axis scales and tick labels of the dashboard's charts: plain functions (no DOM, no uPlot), so the
// Node tests check them too.
import type { Prefs, ViewModel } from "./model.js";

/** What choosing a chart's y scale needs to know of it. */
export interface ScaledChart {
  id: string;
  series: { name: string }[];
  loggable?: boolean;
}

/** The y scale a chart uses: the person's choice, else log for a loss spanning two decades. */
export function yScale(spec: ScaledChart, m: Pick<ViewModel, "series">, prefs: Partial<Prefs>): "log" | "linear" {
  if (!spec.loggable) return "linear";
  const chosen = prefs.yScale?.[spec.id];
  if (chosen === "log" || chosen === "linear") return chosen;
  if (spec.id !== "loss" && !spec.id.endsWith("/loss")) return "linear";
  return spansDecades(m.series[spec.series[0].name]?.y ?? [], 2) ? "log" : "linear";
}

/** True when the positive values span at least `decades` powers of ten. */
export function spansDecades(ys: number[], decades: number): boolean {
  let lo = Infinity;
  let hi = 0;
  for (const y of ys) {
    if (y > 0) {
      if (y < lo) lo = y;
      if (y > hi) hi = y;
    }
  }
  return hi > 0 && hi / lo >= 10 ** decades;
}

export function fmtNum(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e6)) return v.toExponential(2);
  return Number(v.toPrecision(4)).toString();
}

export function fmtEpoch(e: number): string {
  return Number.isFinite(e) ? `epoch ${e.toFixed(1)}` : "–";
}
