// Per-sample loss histogram on a canvas: bars, the 5–95 % and 25–75 % quantile bands, median and mean.
import type { HistogramView } from "../core/protocol.js";
import { fmtNum } from "./charts.js";
import { withAlpha, type Theme } from "./theme.js";

export function drawHistogram(canvas: HTMLCanvasElement, h: HistogramView | undefined, theme: Theme): void {
  const dpr = window.devicePixelRatio || 1;
  const cssW = Math.max(200, canvas.clientWidth || canvas.parentElement?.clientWidth || 300);
  const cssH = 180;
  canvas.width = Math.round(cssW * dpr);
  canvas.height = Math.round(cssH * dpr);
  canvas.style.height = `${cssH}px`;
  const ctx = canvas.getContext("2d")!;
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, cssW, cssH);
  ctx.font = theme.font;
  ctx.textBaseline = "top";
  if (!h || h.n === 0) {
    ctx.fillStyle = theme.axis;
    ctx.fillText("No per-sample losses yet", 8, 8);
    canvas.dataset.bars = "0";
    return;
  }
  const left = 8;
  const right = cssW - 8;
  const top = 22;
  const bottom = cssH - 22;
  const span = h.hi - h.lo;
  const xOf = (v: number) => left + ((v - h.lo) / span) * (right - left);
  const maxCount = Math.max(1, ...h.counts);
  const q = h.quantiles;

  ctx.fillStyle = withAlpha(theme.colors.orange, 0.12);
  ctx.fillRect(xOf(q.p05), top, Math.max(1, xOf(q.p95) - xOf(q.p05)), bottom - top);
  ctx.fillStyle = withAlpha(theme.colors.orange, 0.22);
  ctx.fillRect(xOf(q.p25), top, Math.max(1, xOf(q.p75) - xOf(q.p25)), bottom - top);

  const barW = (right - left) / h.counts.length;
  ctx.fillStyle = withAlpha(theme.colors.blue, 0.85);
  let bars = 0;
  h.counts.forEach((count, i) => {
    if (!count) return;
    const bh = (count / maxCount) * (bottom - top);
    ctx.fillRect(left + i * barW + 0.5, bottom - bh, Math.max(1, barW - 1), bh);
    bars++;
  });

  const vline = (x: number, color: string, dash: number[]) => {
    ctx.strokeStyle = color;
    ctx.setLineDash(dash);
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    ctx.moveTo(x, top);
    ctx.lineTo(x, bottom);
    ctx.stroke();
    ctx.setLineDash([]);
  };
  vline(xOf(q.p50), theme.colors.orange, []);
  vline(xOf(h.mean), theme.colors.green, [4, 3]);

  ctx.strokeStyle = theme.grid;
  ctx.beginPath();
  ctx.moveTo(left, bottom + 0.5);
  ctx.lineTo(right, bottom + 0.5);
  ctx.stroke();
  ctx.fillStyle = theme.axis;
  ctx.textAlign = "left";
  ctx.fillText(fmtNum(h.lo), left, bottom + 4);
  ctx.textAlign = "right";
  ctx.fillText(fmtNum(h.hi), right, bottom + 4);
  // The median's label goes under its line unless it would run into the min or max label.
  const medianText = `median ${fmtNum(q.p50)}`;
  const half = ctx.measureText(medianText).width / 2;
  const mx = xOf(q.p50);
  if (mx - half > left + ctx.measureText(fmtNum(h.lo)).width + 8 && mx + half < right - ctx.measureText(fmtNum(h.hi)).width - 8) {
    ctx.textAlign = "center";
    ctx.fillText(medianText, mx, bottom + 4);
  }
  ctx.textAlign = "left";
  ctx.fillStyle = theme.foreground;
  ctx.fillText(`${h.split} · ${h.n} samples · step ${h.step}`, left, 4);
  ctx.textAlign = "right";
  ctx.fillStyle = theme.axis;
  ctx.fillText("bands: 5–95 %, 25–75 %", right, 4);
  ctx.textAlign = "left";
  canvas.dataset.bars = String(bars);
  canvas.setAttribute("aria-label",
    `Histogram of ${h.n} ${h.split} per-sample losses at step ${h.step}: median ${fmtNum(q.p50)}, ` +
    `25–75 % ${fmtNum(q.p25)}–${fmtNum(q.p75)}, 5–95 % ${fmtNum(q.p05)}–${fmtNum(q.p95)}, mean ${fmtNum(h.mean)}.`);
}
